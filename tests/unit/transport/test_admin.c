/*
 * test_admin.c — the admin socket answers local calls, reports a missing or
 * slow server as an error, replaces a stale socket file, and refuses to
 * steal a live one or delete a non-socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/admin.h"
#include "transport/log.h"

struct tmp {
	char dir[64];
	char sock[96];
};

static int setup(void **state)
{
	struct tmp *t = calloc(1, sizeof *t);
	snprintf(t->dir, sizeof t->dir, "/tmp/sandfs-admin-XXXXXX");
	if (!mkdtemp(t->dir))
		return -1;
	snprintf(t->sock, sizeof t->sock, "%s/admin.sock", t->dir);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tmp *t = *state;
	unlink(t->sock);
	rmdir(t->dir);
	free(t);
	return 0;
}

/* Replies "echo:" + request; a request "sleep" sleeps 500 ms first;
 * "fail" fails (empty reply). */
static int handler(void *ctx, const uint8_t *req, size_t len, uint8_t **reply,
		   size_t *rlen)
{
	int *calls = ctx;
	(*calls)++;
	if (len == 5 && memcmp(req, "sleep", 5) == 0)
		usleep(500 * 1000);
	if (len == 4 && memcmp(req, "fail", 4) == 0)
		return -EIO;
	*reply = malloc(len + 5);
	if (!*reply)
		return -ENOMEM;
	memcpy(*reply, "echo:", 5);
	if (len)
		memcpy(*reply + 5, req, len);
	*rlen = len + 5;
	return 0;
}

static void call_returns_the_handlers_reply(void **state)
{
	struct tmp *t = *state;
	int calls = 0;
	struct admin *a;
	char err[256];
	assert_int_equal(admin_start(t->sock, handler, &calls, &a, err,
				     sizeof err),
			 0);
	struct stat st;
	assert_int_equal(stat(t->sock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600); /* owner only */

	uint8_t *r;
	size_t n;
	assert_int_equal(admin_call(t->sock, "status", 6, &r, &n, 2000), 0);
	assert_int_equal(n, 11);
	assert_memory_equal(r, "echo:status", 11);
	free(r);
	/* empty request, failing handler -> empty reply */
	assert_int_equal(admin_call(t->sock, NULL, 0, &r, &n, 2000), 0);
	assert_int_equal(n, 5);
	free(r);
	assert_int_equal(admin_call(t->sock, "fail", 4, &r, &n, 2000), 0);
	assert_int_equal(n, 0);
	assert_null(r);
	assert_int_equal(calls, 3);
	admin_stop(a);
	/* the socket file is gone after stop */
	assert_int_equal(access(t->sock, F_OK), -1);
}

static void call_without_server_fails_fast(void **state)
{
	struct tmp *t = *state;
	uint8_t *r = (uint8_t *)"poison";
	size_t n = 99;
	int rc = admin_call(t->sock, "x", 1, &r, &n, 2000);
	assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
	assert_null(r);
	assert_int_equal(n, 0);
}

static void slow_server_times_out(void **state)
{
	struct tmp *t = *state;
	int calls = 0;
	struct admin *a;
	assert_int_equal(admin_start(t->sock, handler, &calls, &a, NULL, 0), 0);
	uint8_t *r;
	size_t n;
	assert_int_equal(admin_call(t->sock, "sleep", 5, &r, &n, 100),
			 -ETIMEDOUT);
	assert_null(r);
	admin_stop(a);
	assert_int_equal(calls, 1);
}

static void stale_socket_file_is_replaced(void **state)
{
	struct tmp *t = *state;
	/* what a crashed process leaves: a bound socket file, nobody home */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", t->sock);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	close(fd);
	assert_int_equal(access(t->sock, F_OK), 0);

	int calls = 0;
	struct admin *a;
	char err[256];
	int rc = admin_start(t->sock, handler, &calls, &a, err, sizeof err);
	if (rc)
		fail_msg("admin_start: %d %s", rc, err);
	uint8_t *r;
	size_t n;
	assert_int_equal(admin_call(t->sock, "hi", 2, &r, &n, 2000), 0);
	assert_memory_equal(r, "echo:hi", 7);
	free(r);
	admin_stop(a);
}

static void live_server_is_not_stolen_and_other_files_are_kept(void **state)
{
	struct tmp *t = *state;
	int calls = 0;
	struct admin *a, *b = NULL;
	char err[256];
	assert_int_equal(admin_start(t->sock, handler, &calls, &a, NULL, 0), 0);
	assert_int_equal(admin_start(t->sock, handler, &calls, &b, err,
				     sizeof err),
			 -EADDRINUSE);
	assert_null(b);
	assert_non_null(strstr(err, "already running"));
	/* the first server still works */
	uint8_t *r;
	size_t n;
	assert_int_equal(admin_call(t->sock, "x", 1, &r, &n, 2000), 0);
	free(r);
	admin_stop(a);

	FILE *f = fopen(t->sock, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(admin_start(t->sock, handler, &calls, &b, err,
				     sizeof err),
			 -EEXIST);
	assert_int_equal(access(t->sock, F_OK), 0); /* not deleted */
	unlink(t->sock);

	char longp[200];
	memset(longp, 'a', sizeof longp - 1);
	longp[sizeof longp - 1] = '\0';
	assert_int_equal(admin_start(longp, handler, &calls, &b, err,
				     sizeof err),
			 -ENAMETOOLONG);
}

int main(void)
{
	if (!getenv("SANDFS_LOG"))
		log_set_level(LOG_LVL_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(call_returns_the_handlers_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(call_without_server_fails_fast, setup, teardown),
		cmocka_unit_test_setup_teardown(slow_server_times_out, setup, teardown),
		cmocka_unit_test_setup_teardown(stale_socket_file_is_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(live_server_is_not_stolen_and_other_files_are_kept, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
