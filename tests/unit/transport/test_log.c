/*
 * test_log.c — LOG() filters by level, prints the prefix, and lines written
 * by concurrent threads never interleave.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lines_carry_prefix_level_and_filtered_levels_are_not_evaluated),
		cmocka_unit_test(parse_level_accepts_names_and_rejects_others),
		cmocka_unit_test(concurrent_lines_never_interleave),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
