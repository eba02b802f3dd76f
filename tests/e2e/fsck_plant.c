/*
 * fsck_plant.c — test aid for tests/e2e/ops_fsck.sh: damage a STOPPED
 * node's data directory on purpose, through the real storage formats (the
 * inode table's own LevelDB records, the block store's files), so that
 * fsck's findings can be checked. Never use it on data you care about.
 *
 *   sandfs-fsck-plant DIR info PATH              ino, nlink, first block
 *   sandfs-fsck-plant DIR nlink PATH N           set the inode's nlink to N
 *   sandfs-fsck-plant DIR dangling DIRPATH NAME  add an entry naming no inode
 *   sandfs-fsck-plant DIR corrupt-block HASH     overwrite a block's first
 * bytes
 *
 * Output: one line of key=value pairs (ino=, nlink=, block=, ghost=).
 */
#include "tests/unit/fs/itab_plant.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/blk.h"

/* Resolve an absolute path in the table: 0 and *ino, or -errno. */
static int resolve(struct itab *t, const char *path, uint64_t *ino)
{
	uint64_t cur = ITAB_ROOT_INO;
	char *copy = strdup(path), *save = NULL;
	int rc = 0;
	for (char *c = strtok_r(copy, "/", &save); c && !rc;
	     c = strtok_r(NULL, "/", &save))
		rc = itab_lookup(t, cur, c, strlen(c), &cur, NULL);
	free(copy);
	*ino = cur;
	return rc;
}

static int first_extent(void *ctx, uint64_t index,
                        const uint8_t hash[ITAB_HASH_LEN], uint32_t len)
{
	(void)index, (void)len;
	memcpy(ctx, hash, ITAB_HASH_LEN);
	return 1;
}

static int die(const char *what, int rc)
{
	fprintf(stderr, "sandfs-fsck-plant: %s: %s\n", what, strerror(-rc));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: sandfs-fsck-plant DIR info PATH | "
		                "nlink PATH N | dangling "
		                "DIRPATH NAME | corrupt-block HASH\n");
		return 2;
	}
	const char *dir = argv[1], *cmd = argv[2];
	char path[4200];
	if (!strcmp(cmd, "corrupt-block")) {
		uint8_t h[BLK_HASH_LEN];
		if (blk_from_hex(argv[3], h))
			return die("bad hash", -EINVAL);
		snprintf(path, sizeof(path), "%s/blocks/%.2s/%s", dir, argv[3],
		         argv[3]);
		int fd = open(path, O_WRONLY);
		if (fd < 0)
			return die(path, -errno);
		/* same size, other bytes: the file keeps its name and its CRC
		 */
		static const char junk[] = "planted corruption";
		ssize_t w = pwrite(fd, junk, sizeof(junk) - 1, 0);
		close(fd);
		if (w != (ssize_t)sizeof(junk) - 1)
			return die(path, -EIO);
		printf("block=%s\n", argv[3]);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/meta", dir);
	struct itab *t;
	int rc = itab_open(path, NULL, &t);
	if (rc)
		return die(path, rc);
	uint64_t ino = 0;
	if ((rc = resolve(t, argv[3], &ino)))
		return die(argv[3], rc);
	struct itab_attr a;
	if ((rc = itab_getattr(t, ino, &a)))
		return die(argv[3], rc);
	if (!strcmp(cmd, "info")) {
		uint8_t h[ITAB_HASH_LEN] = {0};
		char hex[BLK_HEX_LEN + 1] = "";
		if (itab_extents(t, ino, 0, UINT64_MAX, first_extent, h) == 0 &&
		    h[0] | h[1])
			blk_hex(h, hex);
		printf("ino=%llu nlink=%u block=%s\n", (unsigned long long)ino,
		       a.nlink, hex);
	} else if (!strcmp(cmd, "nlink") && argc == 5) {
		rc = plant_nlink(t, ino, (uint32_t)strtoul(argv[4], NULL, 10));
		if (rc)
			return die("nlink", rc);
		printf("ino=%llu nlink=%s\n", (unsigned long long)ino, argv[4]);
	} else if (!strcmp(cmd, "dangling") && argc == 5) {
		struct itab_statfs sf;
		itab_statfs(t, &sf);
		uint64_t ghost = sf.next_ino + 100000; /* never handed out */
		rc = plant_dangling(t, ino, argv[4], ghost);
		if (rc)
			return die("dangling", rc);
		printf("dir=%llu ghost=%llu\n", (unsigned long long)ino,
		       (unsigned long long)ghost);
	} else {
		fprintf(stderr, "sandfs-fsck-plant: unknown command %s\n", cmd);
		itab_close(t);
		return 2;
	}
	itab_close(t);
	return 0;
}
