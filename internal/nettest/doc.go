// Package nettest holds network helpers shared by Patrol's tests: loopback
// addresses whose behaviour a test can rely on while other tests run.
package nettest
