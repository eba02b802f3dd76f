/*
 * Stand-ins for the replicator functions fs/data.c calls when it runs
 * with a replicator. The data tests always run without one (cfg.repl ==
 * NULL, voters and link given directly), so these are never reached; they
 * only let the test link without the whole consensus stack.
 */
#include "consensus/repl.h"

#include <stdlib.h>
#include <string.h>

void repl_status(struct repl *r, struct repl_status *st)
{
	(void)r;
	memset(st, 0, sizeof *st);
	abort();
}

struct link *repl_link(struct repl *r)
{
	(void)r;
	abort();
}

void repl_set_request_handler(struct repl *r, repl_request_fn fn, void *ctx)
{
	(void)r, (void)fn, (void)ctx;
	abort();
}
