/*
 * itab_acl.c — POSIX ACL values: checking and the mode <-> ACL rules
 * (see itab_acl.h). No table access here: apply reads and writes the
 * xattrs and calls these on the bytes.
 */
#include "fs/itab_acl.h"

#include <errno.h>
#include <string.h>

#define HDR_LEN 4
#define ENT_LEN 8
#define XATTR_VERSION 2u
#define UNDEFINED_ID 0xffffffffu

/* Tags (linux/posix_acl.h). */
#define TAG_USER_OBJ 0x01u
#define TAG_USER 0x02u
#define TAG_GROUP_OBJ 0x04u
#define TAG_GROUP 0x08u
#define TAG_MASK 0x10u
#define TAG_OTHER 0x20u

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Entry i of a value (no bounds check: callers iterate over n_ents). */
static uint8_t *ent(const void *val, size_t i)
{
	return (uint8_t *)val + HDR_LEN + i * ENT_LEN;
}

static size_t n_ents(size_t len)
{
	return len < HDR_LEN ? 0 : (len - HDR_LEN) / ENT_LEN;
}

enum acl_kind acl_kind_of(const char *name, size_t nl)
{
	if (nl == sizeof(ACL_XATTR_ACCESS) - 1 && !memcmp(name, ACL_XATTR_ACCESS, nl))
		return ACL_KIND_ACCESS;
	if (nl == sizeof(ACL_XATTR_DEFAULT) - 1 && !memcmp(name, ACL_XATTR_DEFAULT, nl))
		return ACL_KIND_DEFAULT;
	return ACL_KIND_NONE;
}

/* posix_acl_valid's state machine: each tag may follow only the ones
 * before it in the canonical order, OTHER ends the list, and a MASK must
 * stand before OTHER when a named entry was seen. */
int acl_check(const void *val, size_t len)
{
	if (!val || len < HDR_LEN + ENT_LEN || (len - HDR_LEN) % ENT_LEN)
		return -EINVAL;
	if (le32(val) != XATTR_VERSION)
		return -EINVAL;
	enum { S_UOBJ, S_USER, S_GROUP, S_OTHER, S_DONE } st = S_UOBJ;
	int named = 0;
	size_t n = n_ents(len);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = ent(val, i);
		uint16_t tag = le16(e), perm = le16(e + 2);
		uint32_t id = le32(e + 4);
		if (perm & ~7u)
			return -EINVAL;
		switch (tag) {
		case TAG_USER_OBJ:
			if (st != S_UOBJ)
				return -EINVAL;
			st = S_USER;
			break;
		case TAG_USER:
			if (st != S_USER || id == UNDEFINED_ID)
				return -EINVAL;
			named = 1;
			break;
		case TAG_GROUP_OBJ:
			if (st != S_USER)
				return -EINVAL;
			st = S_GROUP;
			break;
		case TAG_GROUP:
			if (st != S_GROUP || id == UNDEFINED_ID)
				return -EINVAL;
			named = 1;
			break;
		case TAG_MASK:
			if (st != S_GROUP)
				return -EINVAL;
			st = S_OTHER;
			break;
		case TAG_OTHER:
			if (st != S_OTHER && !(st == S_GROUP && !named))
				return -EINVAL;
			st = S_DONE;
			break;
		default:
			return -EINVAL;
		}
		if (st == S_DONE && i + 1 != n)
			return -EINVAL; /* nothing may follow OTHER */
	}
	return st == S_DONE ? 0 : -EINVAL;
}

void acl_canonical(void *val, size_t len)
{
	size_t n = n_ents(len);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = ent(val, i);
		uint16_t tag = le16(e);
		if (tag != TAG_USER && tag != TAG_GROUP)
			put_le32(e + 4, UNDEFINED_ID);
	}
}

/* posix_acl_equiv_mode. */
int acl_equiv_mode(const void *val, size_t len, uint32_t *perm)
{
	uint32_t mode = 0;
	int mask = -1, not_equiv = 0;
	size_t n = n_ents(len);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = ent(val, i);
		uint32_t p = le16(e + 2) & 7u;
		switch (le16(e)) {
		case TAG_USER_OBJ:
			mode |= p << 6;
			break;
		case TAG_GROUP_OBJ:
			mode |= p << 3;
			break;
		case TAG_OTHER:
			mode |= p;
			break;
		case TAG_MASK:
			mask = (int)p;
			not_equiv = 1;
			break;
		default:
			not_equiv = 1;
			break;
		}
	}
	if (mask >= 0)
		mode = (mode & ~070u) | ((uint32_t)mask << 3);
	*perm = mode;
	return not_equiv;
}

/* __posix_acl_chmod. */
void acl_chmod(void *val, size_t len, uint32_t mode)
{
	uint8_t *group_obj = NULL, *mask = NULL;
	size_t n = n_ents(len);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = ent(val, i);
		switch (le16(e)) {
		case TAG_USER_OBJ:
			put_le16(e + 2, (uint16_t)((mode >> 6) & 7u));
			break;
		case TAG_GROUP_OBJ:
			group_obj = e;
			break;
		case TAG_MASK:
			mask = e;
			break;
		case TAG_OTHER:
			put_le16(e + 2, (uint16_t)(mode & 7u));
			break;
		default:
			break;
		}
	}
	uint8_t *g = mask ? mask : group_obj;
	if (g)
		put_le16(g + 2, (uint16_t)((mode >> 3) & 7u));
}

/* posix_acl_create_masq. */
int acl_create_masq(void *val, size_t len, uint32_t *mode_p)
{
	uint32_t mode = *mode_p;
	uint8_t *group_obj = NULL, *mask = NULL;
	int not_equiv = 0;
	size_t n = n_ents(len);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = ent(val, i);
		uint32_t p = le16(e + 2);
		switch (le16(e)) {
		case TAG_USER_OBJ:
			p &= (mode >> 6) & 7u;
			put_le16(e + 2, (uint16_t)p);
			mode &= (p << 6) | ~0700u;
			break;
		case TAG_USER:
		case TAG_GROUP:
			not_equiv = 1;
			break;
		case TAG_GROUP_OBJ:
			group_obj = e;
			break;
		case TAG_OTHER:
			p &= mode & 7u;
			put_le16(e + 2, (uint16_t)p);
			mode &= p | ~07u;
			break;
		case TAG_MASK:
			mask = e;
			not_equiv = 1;
			break;
		default:
			break;
		}
	}
	uint8_t *g = mask ? mask : group_obj;
	if (g) {
		uint32_t p = le16(g + 2) & ((mode >> 3) & 7u);
		put_le16(g + 2, (uint16_t)p);
		mode &= (p << 3) | ~070u;
	}
	*mode_p = (*mode_p & ~0777u) | (mode & 0777u);
	return not_equiv;
}
