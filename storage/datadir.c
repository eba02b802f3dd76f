/*
 * datadir.c — opening, locking and identifying a node's data directory.
 *
 * The lock is an flock() on DIR/LOCK.sandfs: it is tied to the open file,
 * so it disappears when the process dies (no stale lock after a crash), and
 * a second open — from another process or the same one — fails at once.
 */
#include "storage/datadir.h"

#include "storage/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_NAME    "LOCK.sandfs"
#define FORMAT_NAME  "FORMAT"
#define CLUSTER_NAME "CLUSTER"

struct ddir {
	int lock_fd;
	uint64_t cluster_id; /* 0: none stored */
	char *path;
	char *raft_path;
	char *meta_path;
	char *blocks_path;
};

/* malloc'ed "a/b"; NULL on ENOMEM. */
static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + 1 + strlen(b) + 1;
	char *s = malloc(n);
	if (s)
		(void)snprintf(s, n, "%s/%s", a, b);
	return s;
}

/* Reads up to cap-1 bytes of DIR/name into buf (NUL-terminated). Returns
 * the byte count or -errno. */
static int read_small(const char *dir, const char *name, char *buf, size_t cap)
{
	char *p = join(dir, name);
	if (!p)
		return -ENOMEM;
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, cap - 1);
	int rc = n < 0 ? -errno : (int)n;
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return rc;
}

/* Replaces DIR/name with content atomically and durably: write a temp
 * file, fsync it, rename it over name, fsync DIR. Returns 0 or -errno. */
static int write_small(const char *dir, const char *name, const char *content)
{
	char tmpname[64];
	(void)snprintf(tmpname, sizeof tmpname, ".%s.tmp", name);
	char *tmp = join(dir, tmpname), *dst = join(dir, name);
	int rc = 0, fd = -1;
	if (!tmp || !dst) {
		rc = -ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	size_t len = strlen(content), off = 0;
	while (off < len) {
		ssize_t w = write(fd, content + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, dst) < 0) {
		rc = -errno;
		goto out;
	}
	rc = stor_fsync_dir(dir);
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	free(dst);
	return rc;
}

/* True when DIR holds nothing but our own lock and temp files, i.e. it is
 * safe to claim it as a new data directory. Returns 1, 0 or -errno. */
static int dir_is_fresh(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	int fresh = 1;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (!strcmp(n, ".") || !strcmp(n, "..") ||
		    !strcmp(n, LOCK_NAME) ||
		    !strcmp(n, "." FORMAT_NAME ".tmp") ||
		    !strcmp(n, "." CLUSTER_NAME ".tmp"))
			continue;
		fresh = 0;
		break;
	}
	closedir(d);
	return fresh;
}

/* Takes the exclusive lock on DIR/LOCK.sandfs and records our pid in it. */
static int take_lock(struct ddir *d, char *err, size_t errcap)
{
	char *p = join(d->path, LOCK_NAME);
	if (!p)
		return -ENOMEM;
	d->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->lock_fd < 0) {
		int rc = -errno;
		stor_seterr(err, errcap,
		            "cannot open lock file %s: %s (check that the data "
		            "directory is writable by this user)",
		            p, strerror(-rc));
		free(p);
		return rc;
	}
	free(p);
	if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = -errno;
		if (rc == -EWOULDBLOCK) {
			char buf[32] = "";
			ssize_t n = pread(d->lock_fd, buf, sizeof buf - 1, 0);
			buf[n > 0 ? n : 0] = '\0';
			long pid = strtol(buf, NULL, 10);
			stor_seterr(err, errcap,
			            "data directory %s is in use by another "
			            "sandfs process (pid %ld)",
			            d->path, pid);
			return -EBUSY;
		}
		stor_seterr(err, errcap, "cannot lock data directory %s: %s",
		            d->path, strerror(-rc));
		return rc;
	}
	char pid[32];
	int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(d->lock_fd, 0) < 0 ||
	    pwrite(d->lock_fd, pid, (size_t)len, 0) != len) {
		int rc = errno ? -errno : -EIO;
		stor_seterr(err, errcap,
		            "cannot write lock file in data directory %s: %s",
		            d->path, strerror(-rc));
		return rc;
	}
	return 0;
}

/* Writes FORMAT into a fresh directory, or checks the stored version. */
static int check_format(struct ddir *d, char *err, size_t errcap)
{
	char buf[64];
	int n = read_small(d->path, FORMAT_NAME, buf, sizeof buf);
	if (n == -ENOENT) {
		int fresh = dir_is_fresh(d->path);
		if (fresh < 0) {
			stor_seterr(err, errcap,
			            "cannot list data directory %s: %s",
			            d->path, strerror(-fresh));
			return fresh;
		}
		if (!fresh) {
			stor_seterr(
			    err, errcap,
			    "%s is not empty and has no FORMAT file, so it "
			    "is not a sandfs data directory; use an empty "
			    "or new directory",
			    d->path);
			return -ENOTEMPTY;
		}
		char content[64];
		(void)snprintf(content, sizeof content, "sandfs-format %d\n",
		               DDIR_FORMAT_VERSION);
		int rc = write_small(d->path, FORMAT_NAME, content);
		if (rc < 0)
			stor_seterr(err, errcap,
			            "cannot write %s/" FORMAT_NAME ": %s",
			            d->path, strerror(-rc));
		return rc;
	}
	if (n < 0) {
		stor_seterr(err, errcap, "cannot read %s/" FORMAT_NAME ": %s",
		            d->path, strerror(-n));
		return n;
	}
	static const char magic[] = "sandfs-format ";
	unsigned long version = 0;
	char *end = NULL;
	errno = 0;
	if (strncmp(buf, magic, sizeof magic - 1) == 0 &&
	    buf[sizeof magic - 1] >= '0' && buf[sizeof magic - 1] <= '9')
		version = strtoul(buf + sizeof magic - 1, &end, 10);
	if (!end || errno || end[0] != '\n' || end[1] != '\0') {
		stor_seterr(
		    err, errcap,
		    "%s/" FORMAT_NAME " is unreadable (expected "
		    "\"sandfs-format N\"); this is not a data directory "
		    "this sandfs understands",
		    d->path);
		return -EPROTONOSUPPORT;
	}
	if (version == 0 || version > DDIR_FORMAT_VERSION) {
		stor_seterr(err, errcap,
		            "data directory %s has on-disk format version %lu, "
		            "but this sandfs supports version %d only; run a "
		            "newer sandfs on it",
		            d->path, version, DDIR_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

/* Reads CLUSTER into d->cluster_id (0 when absent). */
static int load_cluster(struct ddir *d, char *err, size_t errcap)
{
	char buf[64];
	int n = read_small(d->path, CLUSTER_NAME, buf, sizeof buf);
	if (n == -ENOENT) {
		d->cluster_id = 0;
		return 0;
	}
	if (n < 0) {
		stor_seterr(err, errcap, "cannot read %s/" CLUSTER_NAME ": %s",
		            d->path, strerror(-n));
		return n;
	}
	char *end = NULL;
	errno = 0;
	unsigned long long id = strtoull(buf, &end, 16);
	if (errno || end == buf || *end != '\n' || id == 0) {
		stor_seterr(err, errcap,
		            "%s/" CLUSTER_NAME " is corrupt (expected a "
		            "hexadecimal cluster id)",
		            d->path);
		return -EUCLEAN;
	}
	d->cluster_id = id;
	return 0;
}

/* See datadir.h. */
int ddir_set_cluster_id(struct ddir *d, uint64_t cluster_id, char *err,
                        size_t errcap)
{
	if (cluster_id == 0)
		return -EINVAL;
	if (d->cluster_id == cluster_id)
		return 0;
	if (d->cluster_id != 0) {
		stor_seterr(err, errcap,
		            "data directory %s belongs to cluster %016" PRIx64
		            ", not to cluster %016" PRIx64
		            "; use another data directory or the matching "
		            "cluster id",
		            d->path, d->cluster_id, cluster_id);
		return -ESTALE;
	}
	char content[32];
	(void)snprintf(content, sizeof content, "%016" PRIx64 "\n", cluster_id);
	int rc = write_small(d->path, CLUSTER_NAME, content);
	if (rc < 0) {
		stor_seterr(err, errcap, "cannot write %s/" CLUSTER_NAME ": %s",
		            d->path, strerror(-rc));
		return rc;
	}
	d->cluster_id = cluster_id;
	return 0;
}

/* See datadir.h. */
int ddir_open(const char *path, uint64_t cluster_id, struct ddir **out,
              char *err, size_t errcap)
{
	*out = NULL;
	if (!path || !*path) {
		stor_seterr(err, errcap, "no data directory given");
		return -EINVAL;
	}
	struct ddir *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->lock_fd = -1;
	d->path = strdup(path);
	d->raft_path = join(path, "raft");
	d->meta_path = join(path, "meta");
	d->blocks_path = join(path, "blocks");
	int rc = -ENOMEM;
	if (!d->path || !d->raft_path || !d->meta_path || !d->blocks_path)
		goto fail;
	rc = stor_mkdir_p(path, 0700);
	if (rc < 0) {
		stor_seterr(err, errcap, "cannot create data directory %s: %s",
		            path, strerror(-rc));
		goto fail;
	}
	if ((rc = take_lock(d, err, errcap)) < 0 ||
	    (rc = check_format(d, err, errcap)) < 0 ||
	    (rc = load_cluster(d, err, errcap)) < 0)
		goto fail;
	if (cluster_id != 0 &&
	    (rc = ddir_set_cluster_id(d, cluster_id, err, errcap)) < 0)
		goto fail;
	*out = d;
	return 0;
fail:
	ddir_close(d);
	return rc;
}

/* See datadir.h. */
void ddir_close(struct ddir *d)
{
	if (!d)
		return;
	if (d->lock_fd >= 0)
		close(d->lock_fd); /* drops the flock */
	free(d->path);
	free(d->raft_path);
	free(d->meta_path);
	free(d->blocks_path);
	free(d);
}

uint64_t ddir_cluster_id(const struct ddir *d)
{
	return d->cluster_id;
}
const char *ddir_path(const struct ddir *d)
{
	return d->path;
}
const char *ddir_raft_path(const struct ddir *d)
{
	return d->raft_path;
}
const char *ddir_meta_path(const struct ddir *d)
{
	return d->meta_path;
}
const char *ddir_blocks_path(const struct ddir *d)
{
	return d->blocks_path;
}
