/*
 * datadir_test.c — data directory: creation, locking, format and cluster id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/datadir.h"
#include "tests/unit/storage/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void write_file(const char *dir, const char *name, const char *text)
{
	char *p = tu_join(dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(p);
}

static void open_creates_missing_nested_dir_0700_with_format(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	char *path = tu_join(tmp, "a/b/node1");
	struct ddir *d;
	char err[512] = "";
	assert_int_equal(ddir_open(path, 0, &d, err, sizeof err), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	char *fmt = tu_join(path, "FORMAT");
	FILE *f = fopen(fmt, "r");
	assert_non_null(f);
	char line[64] = "";
	assert_non_null(fgets(line, sizeof line, f));
	fclose(f);
	assert_string_equal(line, "sandfs-format 1\n");
	assert_string_equal(ddir_path(d), path);
	char *raft = tu_join(path, "raft"), *meta = tu_join(path, "meta"),
	     *blocks = tu_join(path, "blocks");
	assert_string_equal(ddir_raft_path(d), raft);
	assert_string_equal(ddir_meta_path(d), meta);
	assert_string_equal(ddir_blocks_path(d), blocks);
	assert_int_equal(ddir_cluster_id(d), 0);
	ddir_close(d);
	free(raft);
	free(meta);
	free(blocks);
	free(fmt);
	free(path);
	tu_rmtree(tmp);
}

static void second_open_in_same_process_fails_busy_naming_pid(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	struct ddir *d, *d2 = (struct ddir *)1;
	char err[512] = "";
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	assert_int_equal(ddir_open(tmp, 0, &d2, err, sizeof err), -EBUSY);
	assert_null(d2);
	char want[512];
	snprintf(want, sizeof want,
	         "data directory %s is in use by another sandfs process "
	         "(pid %ld)",
	         tmp, (long)getpid());
	assert_string_equal(err, want);
	ddir_close(d);
	/* released on close: opens again */
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	ddir_close(d);
	tu_rmtree(tmp);
}

static void second_process_fails_at_once_while_locked(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	struct ddir *d;
	char err[512] = "";
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ddir *c;
		char cerr[512] = "";
		int rc = ddir_open(tmp, 0, &c, cerr, sizeof cerr);
		ssize_t w = write(pfd[1], cerr, strlen(cerr) + 1);
		(void)w;
		_exit(rc == -EBUSY ? 0 : 1);
	}
	close(pfd[1]);
	char got[512] = "";
	ssize_t r = read(pfd[0], got, sizeof got - 1);
	assert_true(r > 0);
	close(pfd[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	char want[512];
	snprintf(want, sizeof want, "(pid %ld)", (long)getpid());
	assert_non_null(strstr(got, "is in use by another sandfs process"));
	assert_non_null(strstr(got, want));
	ddir_close(d);
	tu_rmtree(tmp);
}

static void lock_is_released_when_holder_process_dies(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ddir *c;
		_exit(ddir_open(tmp, 0, &c, NULL, 0) == 0 ? 0 : 1);
		/* exits holding the lock, without ddir_close() */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	struct ddir *d;
	assert_int_equal(ddir_open(tmp, 0, &d, NULL, 0), 0);
	ddir_close(d);
	tu_rmtree(tmp);
}

static void cluster_id_is_stored_adopted_and_mismatch_refused(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	struct ddir *d;
	char err[512] = "";
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	assert_int_equal(ddir_cluster_id(d), 0);
	ddir_close(d);
	/* nonzero id is stored when none is */
	assert_int_equal(ddir_open(tmp, 0xabc123, &d, err, sizeof err), 0);
	assert_int_equal(ddir_cluster_id(d), 0xabc123);
	ddir_close(d);
	/* 0 adopts the stored one */
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	assert_int_equal(ddir_cluster_id(d), 0xabc123);
	ddir_close(d);
	/* same id is fine */
	assert_int_equal(ddir_open(tmp, 0xabc123, &d, err, sizeof err), 0);
	ddir_close(d);
	/* different id refused, message names both ids and the dir */
	d = (struct ddir *)1;
	assert_int_equal(ddir_open(tmp, 0x777, &d, err, sizeof err), -ESTALE);
	assert_null(d);
	assert_non_null(strstr(err, "0000000000abc123"));
	assert_non_null(strstr(err, "0000000000000777"));
	assert_non_null(strstr(err, tmp));
	/* the failed open released the lock */
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	ddir_close(d);
	tu_rmtree(tmp);
}

static void set_cluster_id_later_stores_once_and_refuses_change(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	struct ddir *d;
	char err[512] = "";
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	assert_int_equal(ddir_set_cluster_id(d, 0, err, sizeof err), -EINVAL);
	assert_int_equal(ddir_set_cluster_id(d, 42, err, sizeof err), 0);
	assert_int_equal(ddir_set_cluster_id(d, 42, err, sizeof err), 0);
	assert_int_equal(ddir_set_cluster_id(d, 43, err, sizeof err), -ESTALE);
	assert_int_equal(ddir_cluster_id(d), 42);
	ddir_close(d);
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	assert_int_equal(ddir_cluster_id(d), 42);
	ddir_close(d);
	tu_rmtree(tmp);
}

static void newer_format_version_is_refused_with_message(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	write_file(tmp, "FORMAT", "sandfs-format 2\n");
	struct ddir *d;
	char err[512] = "";
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err),
	                 -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "format version 2"));
	assert_non_null(strstr(err, "supports version 1"));
	assert_non_null(strstr(err, tmp));
	write_file(tmp, "FORMAT", "garbage\n");
	err[0] = '\0';
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err),
	                 -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "unreadable"));
	write_file(tmp, "FORMAT", "sandfs-format 1\n");
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	ddir_close(d);
	tu_rmtree(tmp);
}

static void corrupt_cluster_file_is_refused(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	struct ddir *d;
	char err[512] = "";
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), 0);
	ddir_close(d);
	write_file(tmp, "CLUSTER", "zz-not-hex\n");
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), -EUCLEAN);
	assert_non_null(strstr(err, "CLUSTER"));
	tu_rmtree(tmp);
}

static void foreign_nonempty_dir_is_refused(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	write_file(tmp, "holiday-photo.jpg", "x");
	struct ddir *d;
	char err[512] = "";
	assert_int_equal(ddir_open(tmp, 0, &d, err, sizeof err), -ENOTEMPTY);
	assert_non_null(strstr(err, "not a sandfs data directory"));
	tu_rmtree(tmp);
}

static void path_that_is_a_file_fails_cleanly(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	write_file(tmp, "file", "x");
	char *p = tu_join(tmp, "file");
	char *under = tu_join(tmp, "file/sub");
	struct ddir *d;
	char err[512] = "";
	assert_int_equal(ddir_open(p, 0, &d, err, sizeof err), -ENOTDIR);
	assert_non_null(strstr(err, "cannot create data directory"));
	assert_int_equal(ddir_open(under, 0, &d, err, sizeof err), -ENOTDIR);
	assert_int_equal(ddir_open("", 0, &d, err, sizeof err), -EINVAL);
	free(p);
	free(under);
	tu_rmtree(tmp);
}

static void unwritable_dir_fails_with_reason_not_crash(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	char *p = tu_join(tmp, "locked");
	assert_int_equal(chmod(tmp, 0755), 0); /* traversable for nobody */
	assert_int_equal(mkdir(p, 0500), 0);
	/* As root, permission bits do not bind: drop to nobody in a child. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(3);
		struct ddir *d;
		char err[512] = "";
		int rc = ddir_open(p, 0, &d, err, sizeof err);
		_exit(rc == -EACCES && strstr(err, "writable") ? 0 : 2);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	free(p);
	tu_rmtree(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(open_creates_missing_nested_dir_0700_with_format),
	    cmocka_unit_test(second_open_in_same_process_fails_busy_naming_pid),
	    cmocka_unit_test(second_process_fails_at_once_while_locked),
	    cmocka_unit_test(lock_is_released_when_holder_process_dies),
	    cmocka_unit_test(cluster_id_is_stored_adopted_and_mismatch_refused),
	    cmocka_unit_test(
	        set_cluster_id_later_stores_once_and_refuses_change),
	    cmocka_unit_test(newer_format_version_is_refused_with_message),
	    cmocka_unit_test(corrupt_cluster_file_is_refused),
	    cmocka_unit_test(foreign_nonempty_dir_is_refused),
	    cmocka_unit_test(path_that_is_a_file_fails_cleanly),
	    cmocka_unit_test(unwritable_dir_fails_with_reason_not_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
