/*
 * test_log.c — LOG() filters by level, prints the prefix, and lines written
 * by concurrent threads never interleave; lines start with an ISO 8601
 * time; a log file reopens at its path after it was moved.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <regex.h>
#include <string.h>
#include <unistd.h>

#include "transport/log.h"

/* Read the whole stream f into a malloc()ed string. */
static char *slurp(FILE *f)
{
	fflush(f);
	long n = ftell(f);
	assert_true(n >= 0);
	char *s = calloc(1, (size_t)n + 1);
	assert_non_null(s);
	rewind(f);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	return s;
}

static int evaluated;
static int side_effect(void)
{
	return ++evaluated;
}

static void lines_carry_prefix_level_and_filtered_levels_are_not_evaluated(
	void **state)
{
	(void)state;
	FILE *f = tmpfile();
	assert_non_null(f);
	log_set_file(f);
	log_set_prefix("node 7");
	log_set_level(LOG_LVL_INFO);
	LOG(INFO, "hello %d", 42);
	LOG(DEBUG, "hidden %d", side_effect());
	LOG(ERROR, "bad thing");
	log_set_file(NULL);
	char *s = slurp(f);
	assert_non_null(strstr(s, "node 7 INFO test_log.c:"));
	assert_non_null(strstr(s, "hello 42\n"));
	assert_non_null(strstr(s, "node 7 ERROR"));
	assert_null(strstr(s, "hidden"));
	assert_int_equal(evaluated, 0);
	free(s);
	fclose(f);
}

static void parse_level_accepts_names_and_rejects_others(void **state)
{
	(void)state;
	enum log_level l;
	assert_int_equal(log_parse_level("debug", &l), 0);
	assert_int_equal(l, LOG_LVL_DEBUG);
	assert_int_equal(log_parse_level("WARN", &l), 0);
	assert_int_equal(l, LOG_LVL_WARN);
	assert_true(log_parse_level("loud", &l) < 0);
	assert_true(log_parse_level(NULL, &l) < 0);
}

static void *writer(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < 500; i++)
		LOG(WARN, "thread=%ld i=%d %s", id, i,
		    "payload-payload-payload-payload-payload-payload");
	return NULL;
}

static void concurrent_lines_never_interleave(void **state)
{
	(void)state;
	FILE *f = tmpfile();
	assert_non_null(f);
	log_set_file(f);
	log_set_prefix("");
	pthread_t t[4];
	for (long i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)i), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	log_set_file(NULL);
	char *s = slurp(f);
	int lines = 0;
	for (char *save = NULL, *line = strtok_r(s, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		lines++;
		/* each line: exactly one record, complete */
		assert_non_null(strstr(line, " WARN test_log.c:"));
		const char *p = strstr(line, "thread=");
		assert_non_null(p);
		assert_null(strstr(p + 1, "thread="));
		size_t n = strlen(line);
		assert_true(n > 7);
		assert_string_equal(line + n - 7, "payload");
	}
	assert_int_equal(lines, 4 * 500);
	free(s);
	fclose(f);
}

/* The whole file at path (malloc'ed), "" when it does not exist. */
static char *read_path(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return calloc(1, 1);
	fseek(f, 0, SEEK_END);
	char *s = slurp(f);
	fclose(f);
	return s;
}

static void lines_start_with_an_iso_time_and_its_offset(void **state)
{
	(void)state;
	FILE *f = tmpfile();
	assert_non_null(f);
	log_set_file(f);
	log_set_prefix("node 3");
	LOG(WARN, "x");
	log_set_file(NULL);
	char *s = slurp(f);
	/* 2024-05-01T12:00:00.123+02:00 node 3 WARN test_log.c:N: x */
	regex_t re;
	assert_int_equal(regcomp(&re,
				 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
				 "[0-9]{2}\\.[0-9]{3}[+-][0-9]{2}:[0-9]{2} node 3 "
				 "WARN test_log\\.c:[0-9]+: x\n$",
				 REG_EXTENDED),
			 0);
	if (regexec(&re, s, 0, NULL, 0) != 0)
		fail_msg("line does not match: '%s'", s);
	regfree(&re);
	free(s);
	fclose(f);
	log_set_prefix("");
}

static void reopen_after_a_move_writes_to_a_new_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/sfs-log-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[64], moved[64];
	snprintf(path, sizeof(path), "%s/node.log", dir);
	snprintf(moved, sizeof(moved), "%s/node.log.1", dir);
	assert_false(log_to_file());
	assert_int_equal(log_reopen(), -ENOENT); /* not logging to a file */
	assert_int_equal(log_open(path), 0);
	assert_true(log_to_file());
	LOG(INFO, "before the move");
	assert_int_equal(rename(path, moved), 0);
	LOG(INFO, "after the move, before the reopen");
	assert_int_equal(log_reopen(), 0);
	LOG(INFO, "after the reopen");
	char *old = read_path(moved), *cur = read_path(path);
	assert_non_null(strstr(old, "before the move"));
	assert_non_null(strstr(old, "after the move, before the reopen"));
	assert_null(strstr(old, "after the reopen"));
	assert_non_null(strstr(cur, "after the reopen"));
	assert_null(strstr(cur, "before"));
	free(old);
	free(cur);
	/* a path that cannot be opened (its directory is gone): the old
	 * file stays in use */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(unlink(moved), 0);
	assert_int_equal(rmdir(dir), 0);
	assert_true(log_reopen() < 0);
	assert_true(log_to_file());
	log_close();
	assert_false(log_to_file());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lines_carry_prefix_level_and_filtered_levels_are_not_evaluated),
		cmocka_unit_test(parse_level_accepts_names_and_rejects_others),
		cmocka_unit_test(concurrent_lines_never_interleave),
		cmocka_unit_test(lines_start_with_an_iso_time_and_its_offset),
		cmocka_unit_test(reopen_after_a_move_writes_to_a_new_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
