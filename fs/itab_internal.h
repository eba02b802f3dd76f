/*
 * Internals shared by itab.c (open, reads, snapshot), itab_ops.c (apply)
 * and itab_codec.c (byte encodings). Not part of the contract.
 */
#ifndef SANDFS_FS_ITAB_INTERNAL_H
#define SANDFS_FS_ITAB_INTERNAL_H

#include "fs/be.h"
#include "fs/itab.h"

#include <leveldb/c.h>
#include <pthread.h>

#define ITAB_FORMAT 1

/* Bounds-checked reader: any read past the end sets bad and yields zeros. */
struct rd {
	const uint8_t *p;
	size_t n;
	bool bad;
};
uint8_t rd_u8(struct rd *r);
uint16_t rd_u16(struct rd *r);
uint32_t rd_u32(struct rd *r);
uint64_t rd_u64(struct rd *r);
const uint8_t *rd_bytes(struct rd *r, size_t n); /* NULL (and bad) if short */

/* In-memory inode: public attributes + the directory cookie counter. */
struct inode {
	struct itab_attr a;
	uint64_t next_cookie; /* directories: next readdir cookie */
};
#define INODE_ENC_LEN 89
void inode_encode(const struct inode *in, uint8_t out[INODE_ENC_LEN]);
int inode_decode(uint64_t ino, const void *buf, size_t len, struct inode *in);

/* Directory entry value ('D'): child ino, S_IFMT type, cookie. */
struct dent {
	uint64_t ino;
	uint32_t type;
	uint64_t cookie;
};
#define DENT_ENC_LEN 17
void dent_encode(const struct dent *d, uint8_t out[DENT_ENC_LEN]);
int dent_decode(const void *buf, size_t len, struct dent *d);

/* Stored result of an op for dedupe ('M''d'). */
struct saved_result {
	int err;
	uint64_t ino;
	struct itab_attr attr;
};
#define RESULT_ENC_LEN (4 + 8 + INODE_ENC_LEN)
void result_encode(const struct saved_result *r, uint8_t out[RESULT_ENC_LEN]);
int result_decode(const void *buf, size_t len, struct saved_result *r);

/* Key builders; return the key length. Buffers: KEY_MAX bytes. */
#define KEY_MAX (1 + 8 + 8 + ITAB_NAME_MAX + 16)
size_t key_ino(uint8_t *k, char pfx, uint64_t ino);                    /* I, L */
size_t key_ino_u64(uint8_t *k, char pfx, uint64_t ino, uint64_t v);    /* C, E */
size_t key_ino_name(uint8_t *k, char pfx, uint64_t ino, const char *n, size_t nl); /* D, X */
size_t key_meta(uint8_t *k, char sub);                                  /* M K, M S */
size_t key_meta_u64(uint8_t *k, char sub, uint64_t a);                  /* M w, M o */
size_t key_meta_u64_u64(uint8_t *k, char sub, uint64_t a, uint64_t b);  /* M d */

/* Per-origin dedupe memory (mirror of the 'M''d' / 'M''w' keys). */
struct dedupe_slot {
	uint64_t seq;
	struct saved_result r;
};
struct dedupe_origin {
	uint64_t origin;
	uint64_t low_water;                         /* seqs below were evicted */
	size_t n;                                   /* slots used, sorted by seq */
	struct dedupe_slot slot[ITAB_DEDUPE_KEEP];
};

/* Replicated counters ('M''S'). */
struct counters {
	uint64_t next_ino;
	uint64_t applied;
	uint64_t inodes;
	uint64_t blocks;
};

struct itab {
	leveldb_t *db;
	leveldb_options_t *opts;
	leveldb_cache_t *cache;
	leveldb_filterpolicy_t *filter;
	leveldb_readoptions_t *ropts;
	leveldb_writeoptions_t *wopts;
	uint32_t block_size;
	uint64_t cluster_id;

	pthread_rwlock_t lock;      /* makes a committed batch + ctr visible at once */
	struct counters ctr;        /* guarded by lock (written by apply thread) */

	/* Apply-thread only: */
	struct dedupe_origin *dd;   /* sorted by origin */
	size_t n_dd;
	uint8_t (*freed)[ITAB_HASH_LEN];
	size_t n_freed, cap_freed;
	leveldb_writebatch_t *wb;
};

/* One entry being applied (itab_ops.c; the lock and open-file ops are in
 * itab_locks.c). Apply thread only. */
#define TXN_SLOTS 8

struct refd {
	uint8_t h[ITAB_HASH_LEN];
	int64_t d;
};

struct txn {
	struct itab *t;
	leveldb_writebatch_t *wb;
	const struct itab_op *op;
	uint64_t index;
	struct itab_result *res;
	struct counters ctr;
	bool io;                 /* a LevelDB read failed: abort the entry */
	struct {
		struct inode in;
		bool dirty, dead;
	} slot[TXN_SLOTS];
	int n;
	struct refd *rd;
	size_t nrd, caprd;
	int soft_err;            /* the op's errno although its changes are kept */
	struct itab_node_rec nrec; /* the one lease record an op may change */
	bool nrec_loaded;
};

/* Note a LevelDB failure (-EIO, -ENOMEM) so apply aborts; returns rc. */
int txn_chk(struct txn *tx, int rc);
/* Inode ino for this op: from a slot or loaded. -ENOENT if absent/deleted. */
int txn_get(struct txn *tx, uint64_t ino, struct inode **out);
/* Mark an inode (a slot pointer) to be written at commit. */
void txn_dirty(struct txn *tx, struct inode *in);
/* Delete everything hanging off an inode (target, xattrs, extents, orphan
 * record; extents drop their block references) and, if in is a slot,
 * the inode itself at commit (otherwise the caller deletes its 'I' key). */
int txn_kill_inode(struct txn *tx, struct inode *in);

/* Add a block reference change (summed per hash, written at commit;
 * a count reaching 0 frees the block). */
int txn_ref_add(struct txn *tx, const uint8_t *h, int64_t d);

/* itab_repair.c: ITAB_OP_REPAIR. */
int repair_op(struct txn *tx);

/* itab_locks.c: the ops, and what UNLINK/RENAME/CREATE/RELEASE_ORPHAN ask. */
int locks_op_setlk(struct txn *tx);
int locks_op_renew(struct txn *tx);
int locks_op_release_node(struct txn *tx);
int locks_op_open(struct txn *tx);
int locks_op_close(struct txn *tx);
/* 1 if some node holds ino open ('O' record), 0 if none, or -EIO. */
int locks_held_open(struct txn *tx, uint64_t ino);
/* CREATE with ITAB_F_OPEN: record that the origin holds new inode ino
 * open (payload in op->value). 0 or -EINVAL. */
int locks_create_open(struct txn *tx, uint64_t ino);

/* DB get: 0 and *val (leveldb_free it) / -ENOENT / -EIO. */
int db_get(struct itab *t, const leveldb_readoptions_t *ro, const uint8_t *k, size_t kl,
	   char **val, size_t *vl);
/* Read and decode inode (no lock taken). */
int db_inode(struct itab *t, uint64_t ino, struct inode *in);
/* Read and decode a dentry (no lock taken). */
int db_dent(struct itab *t, uint64_t parent, const char *name, size_t nl, struct dent *d);

/* Dedupe memory of origin; with add, created empty if missing (NULL on ENOMEM). */
struct dedupe_origin *itab_dd_find(struct itab *t, uint64_t origin, bool add);
/* Call cb for each key with prefix p (from start if given) in key order;
 * a non-zero cb result stops and is returned; -EIO on LevelDB errors. */
typedef int (*itab_scan_cb)(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);
int itab_scan(struct itab *t, const uint8_t *p, size_t pl, const uint8_t *start, size_t sl,
	      itab_scan_cb cb, void *ctx);
/* The same at the read options ro (a LevelDB snapshot; NULL: now). */
int itab_scan_at(struct itab *t, const leveldb_readoptions_t *ro, const uint8_t *p, size_t pl,
		 const uint8_t *start, size_t sl, itab_scan_cb cb, void *ctx);

void counters_encode(const struct counters *c, uint8_t out[32]);
/* (Re)load counters and dedupe memory from the DB. */
int itab_load_state(struct itab *t);
static inline bool is_type(uint32_t mode, uint32_t type) { return (mode & 0170000u) == type; }

#endif
