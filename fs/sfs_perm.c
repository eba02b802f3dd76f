/*
 * sfs_perm.c — the frontend's part of permissions: POSIX ACLs, and the
 * setgid bit a write by an outsider clears.
 *
 * The kernel enforces ACLs: with FUSE_CAP_POSIX_ACL (and
 * default_permissions, which sandfs always sets) it reads a file's
 * "system.posix_acl_access" through getxattr, caches it with the inode
 * and checks every access against it, exactly as for a local
 * filesystem; it forgets the cached ACL when it sets one, after a
 * setattr, and when sandfs invalidates the inode because another node
 * changed it (fsm.c queues that for every applied SETATTR and xattr op).
 * The kernel also checks and converts what setfacl passes, so sandfs
 * only receives valid ACLs from it; the inode table checks them again
 * (itab_acl.c), keeps mode and ACL in step and does the inheritance of
 * default ACLs in apply (itab_ops.c), from replicated state only.
 *
 * With FUSE_CAP_DONT_MASK the kernel hands the create mode and the umask
 * over unmasked: whether the umask applies depends on the parent's
 * default ACL, which apply knows.
 */
#include "fs/sfs_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "transport/log.h"

int sfs_acl_name(const char *name)
{
	if (!strcmp(name, "system.posix_acl_access"))
		return 1;
	if (!strcmp(name, "system.posix_acl_default"))
		return 2;
	return 0;
}

bool sfs_acl_kills_sgid(struct sfs *fs, fuse_req_t req, uint64_t ino)
{
	struct itab_attr a;
	if (itab_getattr(fs->itab, ino, &a) != 0 || !(a.mode & S_ISGID))
		return false;
	return fuse_req_ctx(req)->uid != 0 && !sfs_in_group(req, a.gid);
}

void sfs_acl_init(struct sfs *fs, struct fuse_conn_info *conn)
{
	if (!fs->acl)
		return;
	if (!(conn->capable & FUSE_CAP_POSIX_ACL) || !(conn->capable & FUSE_CAP_DONT_MASK)) {
		LOG(WARN, "the kernel offers no POSIX ACL support to FUSE: setting "
			  "ACLs on this mount fails with EOPNOTSUPP");
		return;
	}
	conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
	atomic_store(&fs->acl_kernel, true);
}

/* Linux's setattr_should_drop_suidgid: a write or truncate by a caller
 * without CAP_FSETID (here: not root) clears setuid, and setgid when the
 * group may execute or the caller is not in the file's group. */
uint32_t sfs_perm_kill(fuse_req_t req, const struct itab_attr *a)
{
	if (!S_ISREG(a->mode) || !(a->mode & (S_ISUID | S_ISGID)) ||
	    fuse_req_ctx(req)->uid == 0)
		return 0;
	uint32_t kill = a->mode & S_ISUID;
	if ((a->mode & S_ISGID) && ((a->mode & S_IXGRP) || !sfs_in_group(req, a->gid)))
		kill |= S_ISGID;
	return kill;
}

/* The kernel's FUSE code clears setuid, and setgid with group execute,
 * before a write by an unprivileged caller (fuse_setattr's own, older
 * rule); setgid without group execute is left to us. */
int sfs_perm_write(struct sfs *fs, fuse_req_t req, uint64_t ino)
{
	struct itab_attr a;
	if (itab_getattr(fs->itab, ino, &a) != 0)
		return 0;
	uint32_t kill = sfs_perm_kill(req, &a);
	if (!kill)
		return 0;
	struct itab_op op = {.code = ITAB_OP_SETATTR, .ino = ino,
			     .valid = ITAB_SET_MODE, .mode = a.mode & 07777 & ~kill};
	sfs_stamp(req, &op);
	int rc = fsm_propose_sync(fs->fsm, &op, NULL);
	if (rc == 0)
		fsm_inval_inode(fs->fsm, ino); /* the kernel still has the old mode */
	return rc;
}

void sfs_perm_truncate(fuse_req_t req, const struct itab_attr *a, struct itab_op *op)
{
	uint32_t kill = sfs_perm_kill(req, a);
	if (!kill || (op->valid & ITAB_SET_MODE))
		return;
	op->valid |= ITAB_SET_MODE;
	op->mode = a->mode & 07777 & ~kill;
}
