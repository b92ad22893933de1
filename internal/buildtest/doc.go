// Package buildtest holds tests about the patrol binary itself: that it
// builds as one static executable with no dynamic loader and no shared
// libraries, so it runs on any Linux host and in a distroless image.
package buildtest
