// Package archtest holds no code of its own: its tests enforce Terrane's
// architectural import rules (see archtest_test.go), so that the pure core
// packages stay free of I/O, clocks, logging and heavy dependencies, and so
// that small binaries such as the CNI plugin stay small.
package archtest
