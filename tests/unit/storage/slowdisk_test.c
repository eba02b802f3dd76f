/*
 * slowdisk_test.c — the sync-delay test hook reads its delay from the file
 * SANDFS_TEST_SYNC_DELAY_FILE names, follows changes to it, clamps it and
 * treats a missing or garbled file as no delay.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/slowdisk.h"
#include "tests/unit/storage/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char *g_file;

static void put(const char *text)
{
	FILE *f = fopen(g_file, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	/* the hook re-reads at most every 100 ms */
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 120 * 1000000l};
	nanosleep(&ts, NULL);
}

static void test_delay_follows_the_file(void **state)
{
	(void)state;
	put("7\n");
	assert_int_equal(stor_sync_delay_ms(), 7);
	stor_sync_delay(); /* sleeps 7 ms, returns */
	put("0");
	assert_int_equal(stor_sync_delay_ms(), 0);
	put("250");
	assert_int_equal(stor_sync_delay_ms(), 250);
}

static void test_bad_values_mean_no_delay_and_big_ones_are_clamped(void **state)
{
	(void)state;
	put("-5");
	assert_int_equal(stor_sync_delay_ms(), 0);
	put("garbage");
	assert_int_equal(stor_sync_delay_ms(), 0);
	put("999999");
	assert_int_equal(stor_sync_delay_ms(), 10000);
	unlink(g_file);
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 120 * 1000000l};
	nanosleep(&ts, NULL);
	assert_int_equal(stor_sync_delay_ms(), 0);
}

int main(void)
{
	char *dir = tu_mkdtemp();
	g_file = tu_join(dir, "delay");
	/* before the hook's first use: it reads the variable once */
	setenv("SANDFS_TEST_SYNC_DELAY_FILE", g_file, 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delay_follows_the_file),
		cmocka_unit_test(test_bad_values_mean_no_delay_and_big_ones_are_clamped),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(g_file);
	rmdir(dir);
	return rc;
}
