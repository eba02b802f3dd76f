/*
 * itab_acl.h — POSIX ACLs in the inode table (internal to fs/itab*).
 *
 * An ACL is stored as the xattr the kernel exchanges with a filesystem
 * ("system.posix_acl_access" / "system.posix_acl_default") in the Linux
 * posix_acl_xattr format, which is little-endian (unlike every other
 * integer in the table: the value is the kernel's, byte for byte):
 *
 *   u32 version (2), then per entry: u16 tag, u16 perm (rwx = 4|2|1),
 *   u32 id (uid for USER, gid for GROUP, 0xffffffff for the others)
 *
 * The functions below are pure: they check and rewrite such values; apply
 * (itab_ops.c) decides where they go. The rules follow Linux's
 * fs/posix_acl.c (posix_acl_valid, posix_acl_equiv_mode,
 * posix_acl_create_masq, __posix_acl_chmod), so a sandfs mount keeps mode
 * and ACL in step exactly like ext4 or tmpfs.
 */
#ifndef SANDFS_FS_ITAB_ACL_H
#define SANDFS_FS_ITAB_ACL_H

#include <stddef.h>
#include <stdint.h>

#define ACL_XATTR_ACCESS "system.posix_acl_access"
#define ACL_XATTR_DEFAULT "system.posix_acl_default"

enum acl_kind {
	ACL_KIND_NONE = 0,
	ACL_KIND_ACCESS = 1,
	ACL_KIND_DEFAULT = 2,
};

/* Which ACL an xattr name is (ACL_KIND_NONE for any other name). */
enum acl_kind acl_kind_of(const char *name, size_t name_len);

/* Check a value as posix_acl_from_xattr + posix_acl_valid do: version 2,
 * a whole number of entries (at least one), perms within rwx, entries in
 * the order USER_OBJ, USER..., GROUP_OBJ, GROUP..., MASK, OTHER with one
 * each of USER_OBJ, GROUP_OBJ, OTHER, a MASK when there is a named entry,
 * named ids other than 0xffffffff. 0 or -EINVAL. */
int acl_check(const void *val, size_t len);

/* Rewrite a checked value in place into its canonical form: the id of
 * every unnamed entry becomes 0xffffffff (what the kernel sends). */
void acl_canonical(void *val, size_t len);

/* The permission bits (0777) an access ACL gives the mode: USER_OBJ, MASK
 * (or GROUP_OBJ without a mask), OTHER. Returns 1 when the ACL says more
 * than the mode (a MASK or a named entry: it must be stored), 0 when the
 * mode says it all. The value must have passed acl_check(). */
int acl_equiv_mode(const void *val, size_t len, uint32_t *perm);

/* chmod: set USER_OBJ, MASK (or GROUP_OBJ) and OTHER from mode's 0777
 * bits, in place. */
void acl_chmod(void *val, size_t len, uint32_t mode);

/* Inheritance: turn a copy of the parent's default ACL into the new
 * inode's access ACL for the create mode *mode (posix_acl_create_masq):
 * the ACL's owner, mask (or group) and other entries are limited by the
 * mode and the mode's 0777 bits by them. Returns 1 when the result must
 * be stored, 0 when the mode says it all. */
int acl_create_masq(void *val, size_t len, uint32_t *mode);

#endif /* SANDFS_FS_ITAB_ACL_H */
