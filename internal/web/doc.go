// Package web is `patrol web`: a JSON API under /api/v1/ and a web console
// at /, both reading and writing etcd through package queue, as the CLI
// does. The server holds no state that matters: run any number of them
// behind a load balancer.
//
// # What a request costs
//
// Nothing reads a batch whole. A results page is a range over the batch's
// results with a limit and a start key (the after cursor); one host is
// looked up by the keys its name leads to. Counts per status and zone come
// from a follower: one list and then a watch of a batch's results per
// server (not per client), started when a batch is first asked about and
// stopped a minute after the last client went. Live progress (Server-Sent
// Events) is read from the followers' memory, so a client streaming it
// adds no etcd read; the running and retrying counts beside it are read
// at most once a second per server (running) and per batch (retrying),
// however many clients watch.
//
// # Auth
//
// Reads are open; writes (submit, cancel, retry) need a bearer token of
// role operator from the --tokens file, whose lines hold a name, a role
// and the token's SHA-256 (never the token). Tokens are compared in
// constant time. A browser write must come from the console's own origin
// (net/http's CrossOriginProtection: Sec-Fetch-Site, else Origin against
// Host) and carry JSON. Without a tokens file every write is refused with
// how to enable them.
//
// # Routes
//
// routes.go lists every route; the OpenAPI file (docs/openapi.yaml) is
// checked against it by a test. Schedules, once they exist, add theirs in
// one file (see scheduleRoutes).
package web
