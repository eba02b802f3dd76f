/*
 * itab_plant.h — test aid: damage an inode table on purpose, through its
 * real storage format (the LevelDB records itab itself writes), so fsck's
 * findings can be checked. Used by the unit tests of fs/itab_check and
 * fs/fsck and by the e2e planting tool (tests/e2e/fsck_plant.c).
 * Never for anything but tests: it bypasses the log, so the replica it
 * touches no longer matches the others.
 */
#ifndef SANDFS_TEST_ITAB_PLANT_H
#define SANDFS_TEST_ITAB_PLANT_H

#include "fs/itab_internal.h"

#include <errno.h>
#include <string.h>

/* Put one raw record (synced). 0 or -EIO. */
static inline int plant_put(struct itab *t, const uint8_t *k, size_t kl,
                            const void *v, size_t vl)
{
	char *err = NULL;
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(wo, 1);
	leveldb_put(t->db, wo, (const char *)k, kl, v, vl, &err);
	leveldb_writeoptions_destroy(wo);
	if (err) {
		leveldb_free(err);
		return -EIO;
	}
	return 0;
}

/* Rewrite inode ino with nlink set to `nlink` (nothing else changes). */
static inline int plant_nlink(struct itab *t, uint64_t ino, uint32_t nlink)
{
	struct inode in;
	int rc = db_inode(t, ino, &in);
	if (rc)
		return rc;
	in.a.nlink = nlink;
	uint8_t k[KEY_MAX], v[INODE_ENC_LEN];
	inode_encode(&in, v);
	return plant_put(t, k, key_ino(k, 'I', ino), v, INODE_ENC_LEN);
}

/* Add an entry `name` of `type` (S_IFMT bits) in directory parent naming
 * inode ino, with its readdir record; the parent's size follows. */
static inline int plant_entry(struct itab *t, uint64_t parent, const char *name,
                              uint64_t ino, uint32_t type)
{
	struct inode dir;
	int rc = db_inode(t, parent, &dir);
	if (rc)
		return rc;
	size_t nl = strlen(name);
	if (nl == 0 || nl > ITAB_NAME_MAX)
		return -EINVAL;
	struct dent d = {.ino = ino, .type = type, .cookie = dir.next_cookie++};
	uint8_t k[KEY_MAX], v[9 + ITAB_NAME_MAX], iv[INODE_ENC_LEN];
	dent_encode(&d, v);
	if ((rc = plant_put(t, k, key_ino_name(k, 'D', parent, name, nl), v,
	                    DENT_ENC_LEN)))
		return rc;
	be_put64(v, ino);
	v[8] = (uint8_t)(type >> 12);
	memcpy(v + 9, name, nl);
	if ((rc = plant_put(t, k, key_ino_u64(k, 'C', parent, d.cookie), v,
	                    9 + nl)))
		return rc;
	dir.a.size++;
	inode_encode(&dir, iv);
	return plant_put(t, k, key_ino(k, 'I', parent), iv, INODE_ENC_LEN);
}

/* Add an entry `name` in directory parent naming inode `ghost` (which
 * should not exist), with its readdir record; the parent's size and
 * cookie counter follow, so the dangling entry is the only damage. */
static inline int plant_dangling(struct itab *t, uint64_t parent,
                                 const char *name, uint64_t ghost)
{
	return plant_entry(t, parent, name, ghost, 0100000);
}

/* Delete the entry `name` of directory parent and its readdir record;
 * the parent's size follows (nothing else). */
static inline int plant_remove_entry(struct itab *t, uint64_t parent,
                                     const char *name)
{
	struct inode dir;
	struct dent d;
	size_t nl = strlen(name);
	int rc = db_inode(t, parent, &dir);
	if (rc || (rc = db_dent(t, parent, name, nl, &d)))
		return rc;
	uint8_t k[KEY_MAX], iv[INODE_ENC_LEN];
	char *err = NULL;
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(wo, 1);
	leveldb_delete(t->db, wo, (char *)k,
	               key_ino_name(k, 'D', parent, name, nl), &err);
	if (!err)
		leveldb_delete(t->db, wo, (char *)k,
		               key_ino_u64(k, 'C', parent, d.cookie), &err);
	leveldb_writeoptions_destroy(wo);
	if (err) {
		leveldb_free(err);
		return -EIO;
	}
	dir.a.size--;
	inode_encode(&dir, iv);
	return plant_put(t, k, key_ino(k, 'I', parent), iv, INODE_ENC_LEN);
}

/* Set the reference count record of a block. */
static inline int plant_refcount(struct itab *t,
                                 const uint8_t hash[ITAB_HASH_LEN],
                                 uint64_t count)
{
	uint8_t k[1 + ITAB_HASH_LEN], v[8];
	k[0] = 'B';
	memcpy(k + 1, hash, ITAB_HASH_LEN);
	be_put64(v, count);
	return plant_put(t, k, sizeof(k), v, 8);
}

/* Point directory dir's parent field at `parent` (a cycle when parent is
 * one of dir's descendants). */
static inline int plant_parent(struct itab *t, uint64_t dir, uint64_t parent)
{
	struct inode in;
	int rc = db_inode(t, dir, &in);
	if (rc)
		return rc;
	in.a.parent = parent;
	uint8_t k[KEY_MAX], v[INODE_ENC_LEN];
	inode_encode(&in, v);
	return plant_put(t, k, key_ino(k, 'I', dir), v, INODE_ENC_LEN);
}

#endif
