/*
 * gen_fuzz_corpus.c — write the seed corpora of fuzz_raft, fuzz_itab,
 * fuzz_fsm, fuzz_snapshot, fuzz_rlog, fuzz_peers and fuzz_config: small
 * valid inputs
 * made with the real encoders (so the fuzzers start past the first
 * checks), one file each, in DIR/<target>/.
 *
 *   gen_fuzz_corpus tests/fuzz/corpus
 */
#include <errno.h>
#include <sys/stat.h>

#include "consensus/raft.h"
#include "consensus/repl_internal.h"
#include "fs/be.h"
#include "fs/digest.h"
#include "fs/itab.h"
#include "fs/itab_acl.h"
#include "fs/itab_internal.h"
#include "tests/fuzz/fuzz_ops.h"

static const char *top;

static void put(const char *sub, const char *name, const void *buf, size_t len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", top, sub);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof path, "%s/%s/%s", top, sub, name);
	FILE *f = fopen(path, "wb");
	if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

/* A growable byte string. */
struct bs {
	uint8_t b[1 << 17];
	size_t n;
};

static void bs_add(struct bs *s, const void *p, size_t n)
{
	if (s->n + n > sizeof s->b)
		abort();
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void bs_u8(struct bs *s, uint8_t v) { bs_add(s, &v, 1); }

static void bs_u16(struct bs *s, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	bs_add(s, b, 2);
}

static size_t enc_op(const struct itab_op *op, uint8_t *out, size_t cap)
{
	long n = itab_op_encode(op, out, cap);
	if (n < 0)
		abort();
	return (size_t)n;
}

/* ---- raft ------------------------------------------------------------------ */

static void raft_seeds(void)
{
	struct bs s;
	uint8_t buf[4096];
	struct raft_entry ents[2] = {
	    {.index = 5, .term = 2, .type = RAFT_ENTRY_NORMAL, .len = 3, .data = (uint8_t *)"abc"},
	    {.index = 6, .term = 2, .type = RAFT_ENTRY_NORMAL, .len = 0}};
	struct raft_msg m[] = {
	    {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 2, .prev_index = 4,
	     .prev_term = 1, .commit = 4, .n_entries = 2, .entries = ents, .ctx = 9},
	    {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 2, .index = 6,
	     .reject = true, .hint_index = 3, .hint_term = 1},
	    {.type = RAFT_MSG_VOTE, .from = 3, .to = 1, .term = 3, .prev_index = 6,
	     .prev_term = 2, .transfer = true},
	    {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 3, .term = 3, .offset = 0,
	     .done = true, .len = 4, .data = (uint8_t *)"snap",
	     .snap = {.index = 6, .term = 2, .conf = {.n = 2, .nodes = {
		 {.id = 1, .role = RAFT_VOTER, .addr = "tcp://127.0.0.1:7001"},
		 {.id = 2, .role = RAFT_LEARNER, .addr = "tcp://127.0.0.2:7002"}}}}},
	    {.type = RAFT_MSG_READ_INDEX_RESP, .from = 1, .to = 2, .term = 3, .index = 7, .ctx = 4},
	};
	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
		s.n = 0;
		bs_u8(&s, 0);
		size_t n = raft_msg_encode(&m[i], buf, sizeof buf);
		bs_add(&s, buf, n);
		char name[32];
		snprintf(name, sizeof name, "msg_%s", raft_msg_name(m[i].type));
		put("raft", name, s.b, s.n);
	}
	/* a configuration entry's payload: op, u64 node, u16 len, addr */
	s.n = 0;
	bs_u8(&s, 1);
	bs_u8(&s, RAFT_CONF_ADD_LEARNER);
	uint8_t id[8];
	be_put64(id, 4);
	bs_add(&s, id, 8);
	bs_u16(&s, 20);
	bs_add(&s, "tcp://127.0.0.4:7004", 20);
	put("raft", "conf_change_add", s.b, s.n);

	struct raft_conf c = {.n = 3, .nodes = {
	    {.id = 1, .role = RAFT_VOTER, .addr = "tcp://127.0.0.1:7001"},
	    {.id = 2, .role = RAFT_VOTER, .addr = "tcp://127.0.0.2:7002"},
	    {.id = 5, .role = RAFT_LEARNER, .addr = "tcp://[::1]:7005"}}};
	s.n = 0;
	bs_u8(&s, 2);
	size_t n = repl_conf_encode(&c, buf, sizeof buf);
	bs_add(&s, buf, n);
	put("raft", "stored_conf", s.b, s.n);

	struct repl_status st = {.raft = {.id = 2, .role = RAFT_LEADER, .term = 3,
					  .leader = 2, .commit = 10, .applied = 10,
					  .last_index = 11, .first_index = 1}};
	st.raft.conf = c;
	st.raft.match[0] = 10;
	s.n = 0;
	bs_u8(&s, 3);
	n = repl_status_encode(&st, "entries=10 digest=0011223344556677", buf, sizeof buf);
	bs_add(&s, buf, n);
	put("raft", "status_reply", s.b, s.n);
}

/* ---- itab codecs -------------------------------------------------------- */

static const uint8_t acl_named[] = {
    2, 0, 0, 0,                               /* version */
    0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,    /* USER_OBJ rw- */
    0x02, 0, 4, 0, 0xe8, 0x03, 0, 0,          /* USER 1000 r-- */
    0x04, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,    /* GROUP_OBJ r-- */
    0x10, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,    /* MASK rw- */
    0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};   /* OTHER --- */

static void itab_seeds(void)
{
	struct bs s;
	uint8_t buf[4096];
	struct itab_extent ext[2] = {{.index = 0, .hash = {1, 2, 3}, .len = 65536},
				     {.index = 3, .len = 100}};
	struct itab_op ops[] = {
	    {.code = ITAB_OP_CREATE, .parent = 1, .name = "f", .name_len = 1,
	     .mode = S_IFREG | 0644, .umask = 022, .uid = 1000, .gid = 1000, .now_ns = 1},
	    {.code = ITAB_OP_WRITE, .ino = 2, .size = 300000, .valid = ITAB_SET_MTIME,
	     .mtime_ns = 5, .extents = ext, .n_extents = 2},
	    {.code = ITAB_OP_RENAME, .parent = 1, .name = "a", .name_len = 1,
	     .newparent = 3, .newname = "b", .newname_len = 1, .flags = ITAB_RENAME_EXCHANGE},
	    {.code = ITAB_OP_SETXATTR, .ino = 2, .xname = ACL_XATTR_ACCESS,
	     .xname_len = sizeof ACL_XATTR_ACCESS - 1, .value = acl_named,
	     .value_len = sizeof acl_named},
	    {.code = ITAB_OP_SYMLINK, .parent = 1, .name = "l", .name_len = 1,
	     .target = "/etc/passwd", .target_len = 11},
	};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		s.n = 0;
		bs_u8(&s, 0);
		bs_add(&s, buf, enc_op(&ops[i], buf, sizeof buf));
		char name[32];
		snprintf(name, sizeof name, "op_%s", itab_op_name(ops[i].code));
		put("itab", name, s.b, s.n);
	}
	struct itab_lock lk = {.kind = ITAB_LK_POSIX, .type = ITAB_LK_WRITE, .owner = 7,
			       .start = 0, .end = ITAB_LK_EOF, .pid = 99, .node = 2,
			       .incarnation = 1, .gen = 1, .seq = 3};
	s.n = 0;
	bs_u8(&s, 1);
	itab_lock_encode(&lk, buf);
	bs_add(&s, buf, ITAB_LOCK_ENC_LEN);
	put("itab", "lock", s.b, s.n);

	struct inode in = {.a = {.mode = S_IFDIR | 0755, .nlink = 2, .size = 0,
				 .generation = 1, .parent = 1},
			   .next_cookie = 5};
	s.n = 0;
	bs_u8(&s, 2);
	inode_encode(&in, buf);
	bs_add(&s, buf, INODE_ENC_LEN);
	put("itab", "inode", s.b, s.n);
	struct dent d = {.ino = 2, .type = S_IFREG, .cookie = 3};
	s.n = 0;
	bs_u8(&s, 3);
	dent_encode(&d, buf);
	bs_add(&s, buf, DENT_ENC_LEN);
	put("itab", "dent", s.b, s.n);
	struct saved_result r = {.err = -EEXIST, .ino = 2, .attr = in.a};
	s.n = 0;
	bs_u8(&s, 4);
	result_encode(&r, buf);
	bs_add(&s, buf, RESULT_ENC_LEN);
	put("itab", "result", s.b, s.n);
	s.n = 0;
	bs_u8(&s, 5);
	bs_u16(&s, 0750);
	bs_u16(&s, 0);
	bs_add(&s, acl_named, sizeof acl_named);
	put("itab", "acl_named", s.b, s.n);

	struct dsm_dedupe *t = dsm_dedupe_new();
	uint8_t res[8] = {0, 0, 0, 1, 2, 3, 4, 5};
	dsm_dedupe_record(t, 1, 1, 0, res, sizeof res);
	dsm_dedupe_record(t, 1, 2, 1, res, sizeof res);
	dsm_dedupe_record(t, 3, 9, 0, res, 4);
	uint8_t *dd;
	size_t ddl;
	if (dsm_dedupe_encode(t, &dd, &ddl) != 0)
		abort();
	s.n = 0;
	bs_u8(&s, 6);
	bs_add(&s, dd, ddl);
	put("itab", "dedupe", s.b, s.n);
	free(dd);
	dsm_dedupe_free(t);
}

/* ---- fsm and snapshot ---------------------------------------------------- */

/* A little tree as raw entries (fuzz_ops.h: env, kind 1, u16 len, op). */
static size_t tree_ops(struct itab_op *ops)
{
	static struct itab_extent ext[1] = {{.index = 0, .hash = {9}, .len = 10}};
	struct itab_op o[] = {
	    {.code = ITAB_OP_MKDIR, .parent = 1, .name = "a", .name_len = 1, .mode = 0755},
	    {.code = ITAB_OP_CREATE, .parent = 2, .name = "b", .name_len = 1,
	     .mode = S_IFREG | 0644},
	    {.code = ITAB_OP_WRITE, .ino = 3, .size = 10, .extents = ext, .n_extents = 1},
	    {.code = ITAB_OP_SETXATTR, .ino = 3, .xname = "user.a", .xname_len = 6,
	     .value = "v", .value_len = 1},
	    {.code = ITAB_OP_SYMLINK, .parent = 1, .name = "l", .name_len = 1,
	     .target = "a/b", .target_len = 3},
	    {.code = ITAB_OP_LINK, .ino = 3, .parent = 1, .name = "c", .name_len = 1},
	    {.code = ITAB_OP_RENAME, .parent = 2, .name = "b", .name_len = 1,
	     .newparent = 1, .newname = "d", .newname_len = 1},
	    {.code = ITAB_OP_UNLINK, .parent = 1, .name = "c", .name_len = 1},
	};
	memcpy(ops, o, sizeof o);
	return sizeof o / sizeof o[0];
}

static void add_raw_entries(struct bs *s, const struct itab_op *ops, size_t n,
			    bool with_env)
{
	uint8_t buf[4096];
	for (size_t i = 0; i < n; i++) {
		if (with_env)
			bs_u8(s, 1); /* origin 1, next seq */
		bs_u8(s, 1);         /* raw */
		size_t len = enc_op(&ops[i], buf, sizeof buf);
		bs_u16(s, (uint16_t)len);
		bs_add(s, buf, len);
	}
}

static int dump_cb(void *ctx, const void *buf, size_t len)
{
	bs_add(ctx, buf, len);
	return 0;
}

static void fsm_snapshot_seeds(void)
{
	struct itab_op ops[16];
	size_t n = tree_ops(ops);
	static struct bs s;
	s.n = 0;
	add_raw_entries(&s, ops, n, true);
	put("fsm", "tree", s.b, s.n);
	/* the same built from fuzz bytes: one of each op code */
	s.n = 0;
	for (unsigned c = 0; c < ITAB_OP__COUNT; c++) {
		bs_u8(&s, 1);
		bs_u8(&s, 0); /* built */
		bs_u8(&s, (uint8_t)c);
		for (int k = 0; k < 40; k++)
			bs_u8(&s, (uint8_t)(k * 7 + c));
	}
	put("fsm", "built_all_codes", s.b, s.n);

	/* a snapshot of that tree: digest part + itab dump */
	char dir[] = "/tmp/sfs-gen-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	char path[128];
	snprintf(path, sizeof path, "%s/itab", dir);
	struct itab *t;
	if (itab_open(path, NULL, &t) != 0)
		abort();
	uint8_t buf[4096];
	for (size_t i = 0; i < n; i++) {
		struct itab_result r;
		size_t len = enc_op(&ops[i], buf, sizeof buf);
		if (itab_apply(t, i + 1, buf, len, &r) != 0)
			abort();
	}
	static struct bs dump;
	dump.n = 0;
	if (itab_snapshot(t, dump_cb, &dump) != 0)
		abort();
	itab_close(t);
	snprintf(path, sizeof path, "%s/dsm", dir);
	struct dsm *d;
	if (dsm_open(path, &d) != 0)
		abort();
	struct repl_sm sm = dsm_sm(d);
	uint8_t res[64];
	size_t rl;
	for (uint64_t i = 1; i <= n; i++)
		sm.apply(sm.ctx, i, 1, i, 0, (const uint8_t *)"e", 1, res, sizeof res, &rl);
	uint8_t *dd;
	uint64_t ddl, di;
	if (sm.snapshot(sm.ctx, &di, &dd, &ddl) != 0)
		abort();
	dsm_close(d);
	fz_rm_tree(dir);

	s.n = 0;
	bs_u8(&s, 0); /* keep the checksum as it is */
	if (8 + ddl + dump.n > 65535)
		abort();
	bs_u16(&s, (uint16_t)(8 + ddl + dump.n));
	uint8_t l8[8];
	be_put64(l8, ddl);
	bs_add(&s, l8, 8);
	bs_add(&s, dd, ddl);
	bs_add(&s, dump.b, dump.n);
	/* then a few entries applied on the restored table */
	struct itab_op more[] = {
	    {.code = ITAB_OP_RMDIR, .parent = 1, .name = "a", .name_len = 1},
	    {.code = ITAB_OP_UNLINK, .parent = 1, .name = "d", .name_len = 1},
	    {.code = ITAB_OP_RELEASE_ORPHAN, .ino = 3},
	};
	add_raw_entries(&s, more, 3, false);
	put("snapshot", "tree", s.b, s.n);
	free(dd);
}

/* ---- rlog ------------------------------------------------------------------ */

static void rlog_seeds(void)
{
	struct bs s;
	s.n = 0;
	/* snapshot at 2 (term 1, a conf), hard state, entries 3..5 */
	uint8_t conf[64];
	struct raft_conf c = {.n = 1, .nodes = {{.id = 1, .addr = "tcp://127.0.0.1:7001"}}};
	size_t cl = repl_conf_encode(&c, conf, sizeof conf);
	bs_u8(&s, 2), bs_u8(&s, 2), bs_u8(&s, 1), bs_u16(&s, (uint16_t)cl);
	bs_add(&s, conf, cl), bs_u8(&s, 0);
	bs_u8(&s, 1), bs_u8(&s, 2), bs_u8(&s, 1), bs_u8(&s, 4), bs_u8(&s, 0);
	for (uint8_t i = 3; i <= 5; i++) {
		bs_u8(&s, 0), bs_u8(&s, i), bs_u8(&s, i == 5 ? 2 : 1), bs_u8(&s, 0);
		bs_u16(&s, 5), bs_add(&s, "hello", 5), bs_u8(&s, 0);
	}
	put("rlog", "snap_hs_entries", s.b, s.n);
	/* an entry at 1 damaged */
	s.n = 0;
	bs_u8(&s, 0x80), bs_u8(&s, 1), bs_u8(&s, 1), bs_u8(&s, 0);
	bs_u16(&s, 3), bs_add(&s, "abc", 3), bs_u8(&s, 7);
	put("rlog", "damaged_entry", s.b, s.n);
}

/* ---- peers ----------------------------------------------------------------- */

static void peers_seeds(void)
{
	static const char *const p[] = {
	    "1=127.0.0.1:7001,2=127.0.0.2:7002,3=127.0.0.3:7003",
	    "1=tcp://node-a.example:7000,2=tcp://[::1]:7001",
	    "4=10.0.0.4:65535",
	    "1=127.0.0.1:0",
	};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
		char name[16];
		snprintf(name, sizeof name, "list%zu", i);
		put("peers", name, p[i], strlen(p[i]));
	}
}

/* ---- config ---------------------------------------------------------------- */

static void config_seeds(void)
{
	static const char *const c[] = {
	    "# the cluster\nmember = 1=10.0.0.1:7000\nmember = 2=10.0.0.2:7000\n"
	    "member = 3=10.0.0.3:7000\ndata = /var/lib/sandfs/%i\n"
	    "secret-file = secret\nmount-options = allow_other\n",
	    "id = 2\nmember=1=h1:1\nmember=2=[::1]:2\ntimeout_ms = 3000 # ms\n"
	    "log = /var/log/sandfs-%i.log\nlog-level = debug\ncluster-id = 00ff\n"
	    "tls-cert = c.pem\ntls-key = k.pem\ntls-ca = ca.pem\nmountpoint = /mnt\n",
	    "data = %%x%i%\n",
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		char name[16];
		snprintf(name, sizeof name, "conf%zu", i);
		put("config", name, c[i], strlen(c[i]));
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_fuzz_corpus DIR (e.g. tests/fuzz/corpus)\n");
		return 2;
	}
	top = argv[1];
	raft_seeds();
	itab_seeds();
	fsm_snapshot_seeds();
	rlog_seeds();
	peers_seeds();
	config_seeds();
	return 0;
}
