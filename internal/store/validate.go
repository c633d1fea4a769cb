package store

import (
	"errors"
	"fmt"
)

// MaxTxnOps is the most ops one Txn may carry on every backend. It is etcd's
// default --max-txn-ops; the bolt backend enforces the same bound so code
// that passes on one backend passes on the other.
const MaxTxnOps = 128

// ErrInvalid marks a request no store state could make valid: an empty key,
// a delete without a revision, the same key twice in one Txn.
var ErrInvalid = errors.New("store: invalid request")

// CheckKey rejects keys no backend accepts.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalid)
	}
	return nil
}

// CheckOps reports why ops cannot form a transaction, or nil. Backends call
// it before touching their data so a bad Txn changes nothing.
func CheckOps(ops []Op) error {
	if len(ops) == 0 {
		return fmt.Errorf("%w: transaction has no ops", ErrInvalid)
	}
	if len(ops) > MaxTxnOps {
		return fmt.Errorf("%w: transaction has %d ops, at most %d allowed", ErrInvalid, len(ops), MaxTxnOps)
	}
	seen := make(map[string]struct{}, len(ops))
	for i, op := range ops {
		if err := CheckKey(op.Key); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		if op.Revision < 0 {
			return fmt.Errorf("%w: op %d on %q: negative revision %d", ErrInvalid, i, op.Key, op.Revision)
		}
		if op.Guard && (op.Delete || op.Value != nil) {
			return fmt.Errorf("%w: op %d: a guard on %q writes nothing; drop its value and delete flag", ErrInvalid, i, op.Key)
		}
		if op.Guard {
			continue // a prefix may also be written by the same transaction
		}
		if op.Delete && op.Revision == 0 {
			return fmt.Errorf("%w: op %d: delete of %q needs the revision it read", ErrInvalid, i, op.Key)
		}
		if _, dup := seen[op.Key]; dup {
			return fmt.Errorf("%w: op %d: key %q appears twice in one transaction", ErrInvalid, i, op.Key)
		}
		seen[op.Key] = struct{}{}
	}
	return nil
}
