package vpc

import (
	"context"
	"errors"
	"net/netip"
)

// Cloud is what the reconciler needs from a cloud's route tables. The AWS
// adapter (internal/cloud/aws) implements it over EC2; tests use the same
// adapter against internal/cloud/ec2fake. Errors wrap ErrThrottled,
// ErrRouteLimit or ErrNotFound where the cloud said so.
type Cloud interface {
	// RouteTable lists every route of one table, Terrane's or not.
	RouteTable(ctx context.Context, table string) ([]CloudRoute, error)
	CreateRoute(ctx context.Context, table string, dst netip.Prefix, instance string) error
	ReplaceRoute(ctx context.Context, table string, dst netip.Prefix, instance string) error
	DeleteRoute(ctx context.Context, table string, dst netip.Prefix) error
	// DisableSourceDestCheck lets the instance send and receive packets
	// whose addresses are not its own (pod addresses).
	DisableSourceDestCheck(ctx context.Context, instance string) error
}

// CloudRoute is one route of a table as the cloud reports it.
type CloudRoute struct {
	Dst netip.Prefix
	// Instance is the target instance; empty for any other target.
	Instance string
	// Target names any other target (local, igw-…, nat-…, eni-…).
	Target string
	// Origin is how the route came to be: CreateRoute for routes an API
	// call made, CreateRouteTable for the VPC's local route,
	// EnableVgwRoutePropagation for propagated ones.
	Origin string
	// Blackhole: the target is gone (a terminated instance).
	Blackhole bool
}

// OriginCreateRoute is the origin of routes made by CreateRoute: the only
// ones the reconciler may own.
const OriginCreateRoute = "CreateRoute"

// Errors a Cloud wraps for the reconciler to branch on.
var (
	// ErrThrottled: the cloud refused the call for its rate limit
	// (EC2 RequestLimitExceeded); retry later.
	ErrThrottled = errors.New("throttled by the cloud API")
	// ErrRouteLimit: the table holds as many routes as the cloud allows
	// (EC2 RouteLimitExceeded).
	ErrRouteLimit = errors.New("the route table is at the cloud's route limit")
	// ErrNotFound: the table, route or instance does not exist.
	ErrNotFound = errors.New("not found")
)
