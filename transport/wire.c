/*
 * wire.c — frame encoding and verification (see wire.h for the layout).
 */
#include "transport/wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* CRC32C table for the reflected polynomial 0x82F63B78. */
static const uint32_t crc32c_table[256] = {
	0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
	0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
	0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
	0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
	0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
	0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
	0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
	0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
	0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
	0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
	0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
	0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
	0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
	0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
	0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
	0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
	0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
	0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
	0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
	0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
	0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
	0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
	0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
	0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
	0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
	0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
	0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
	0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
	0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
	0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
	0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
	0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
	0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
	0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
	0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
	0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
	0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
	0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
	0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
	0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
	0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
	0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
	0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

/* CRC32C, byte at a time (the portable path). */
static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>
/* CRC32C with the SSE4.2 crc32 instruction, 8 bytes at a time: every
 * frame is checksummed twice (send and receive), and byte-at-a-time cost
 * half the CPU of replicating file blocks. */
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t)c;
	while (len--)
		crc = _mm_crc32_u8(crc, *p++);
	return crc;
}
#endif

/* CRC32C; crc starts at 0 and chains across calls. */
uint32_t wire_crc32c(uint32_t crc, const void *data, size_t len)
{
	crc = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc32c_hw(crc, data, len);
#endif
	return ~crc32c_sw(crc, data, len);
}

static void be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static bool has_secret(const struct wire_cfg *c)
{
	return c->secret && c->secret_len > 0;
}

static size_t trailer_len(const struct wire_cfg *c)
{
	return has_secret(c) ? WIRE_MAC_LEN : WIRE_CRC_LEN;
}

static uint32_t max_payload(const struct wire_cfg *c)
{
	return c->max_payload ? c->max_payload : WIRE_MAX_PAYLOAD_DEFAULT;
}

static bool type_has_kind(uint8_t type)
{
	return type == WIRE_REQUEST || type == WIRE_REPLY;
}

/* HMAC-SHA256 of data keyed by the cluster secret, truncated to 16 bytes.
 * Returns 0 or -ENOMEM. */
static int frame_mac(const struct wire_cfg *c, const uint8_t *data,
		     size_t len, uint8_t out[WIRE_MAC_LEN])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!HMAC(EVP_sha256(), c->secret, (int)c->secret_len, data, len, md,
		  &mdlen) ||
	    mdlen < WIRE_MAC_LEN)
		return -ENOMEM;
	memcpy(out, md, WIRE_MAC_LEN);
	return 0;
}

/* Bytes on the wire for a frame of this type and body size. */
size_t wire_frame_len(const struct wire_cfg *c, uint8_t type, size_t body_len)
{
	return WIRE_HDR_LEN + (type_has_kind(type) ? WIRE_KIND_LEN : 0) +
	       body_len + trailer_len(c);
}

/* Write header, optional kind prefix, body and trailer into buf. */
int wire_encode(const struct wire_cfg *c, const struct wire_frame *f,
		uint8_t *buf, size_t cap, size_t *out_len)
{
	if (!c || !f || (f->body_len && !f->body))
		return -EINVAL;
	if (f->type < 1 || f->type > WIRE_TYPE_MAX)
		return -EINVAL;
	bool kinded = type_has_kind(f->type);
	if (kinded && (f->kind < 1 || f->kind > WIRE_KIND_MAX))
		return -EINVAL;
	size_t payload = (kinded ? WIRE_KIND_LEN : 0) + f->body_len;
	if (payload < f->body_len || payload > max_payload(c))
		return -EMSGSIZE;
	size_t total = WIRE_HDR_LEN + payload + trailer_len(c);
	if (!buf || cap < total)
		return -ENOSPC;

	memcpy(buf, WIRE_MAGIC, 4);
	buf[4] = WIRE_VERSION;
	buf[5] = f->type;
	be16(buf + 6, has_secret(c) ? WIRE_FLAG_MAC : 0);
	be32(buf + 8, (uint32_t)payload);
	be64(buf + 12, c->cluster_id);
	be64(buf + 20, f->from);
	be64(buf + 28, f->req_id);
	uint8_t *p = buf + WIRE_HDR_LEN;
	if (kinded) {
		be16(p, f->kind);
		p += WIRE_KIND_LEN;
	}
	if (f->body_len)
		memcpy(p, f->body, f->body_len);
	p += f->body_len;

	size_t covered = WIRE_HDR_LEN + payload;
	if (has_secret(c)) {
		int rc = frame_mac(c, buf, covered, p);
		if (rc)
			return rc;
	} else {
		be32(p, wire_crc32c(0, buf, covered));
	}
	if (out_len)
		*out_len = total;
	return 0;
}

/* Encode into a fresh buffer; caller frees *out. */
int wire_encode_alloc(const struct wire_cfg *c, const struct wire_frame *f,
		      uint8_t **out, size_t *out_len)
{
	if (!c || !f || !out)
		return -EINVAL;
	if (f->body_len > max_payload(c))
		return -EMSGSIZE;
	size_t total = wire_frame_len(c, f->type, f->body_len);
	uint8_t *buf = malloc(total);
	if (!buf)
		return -ENOMEM;
	int rc = wire_encode(c, f, buf, total, out_len);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

/* Record why a frame was refused; returns rc for tail calls. */
__attribute__((format(printf, 4, 5))) static int
reject(char *why, size_t whycap, int rc, const char *fmt, ...)
{
	if (why && whycap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whycap, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Verify one frame and expose its fields (see wire.h for the checks). */
int wire_decode(const uint8_t *buf, size_t len, const struct wire_cfg *c,
		struct wire_frame *f, char *why, size_t whycap)
{
	if (why && whycap)
		why[0] = '\0';
	if (!c || !f || (len && !buf))
		return reject(why, whycap, -EINVAL, "bad arguments");
	memset(f, 0, sizeof *f);

	size_t tlen = trailer_len(c);
	if (len < WIRE_HDR_LEN + WIRE_CRC_LEN)
		return reject(why, whycap, -ENODATA,
			      "short frame: %zu bytes, need at least %zu", len,
			      (size_t)(WIRE_HDR_LEN + WIRE_CRC_LEN));
	if (memcmp(buf, WIRE_MAGIC, 4) != 0)
		return reject(why, whycap, -EPROTO,
			      "bad magic %02x%02x%02x%02x (not a sandfs frame)",
			      buf[0], buf[1], buf[2], buf[3]);
	if (buf[4] != WIRE_VERSION)
		return reject(why, whycap, -EPROTONOSUPPORT,
			      "unknown version %u (we speak %u)", buf[4],
			      WIRE_VERSION);
	uint16_t flags = rd16(buf + 6);
	if (flags & ~WIRE_FLAGS_KNOWN)
		return reject(why, whycap, -EPROTO, "unknown flags 0x%04x",
			      flags);
	if ((flags & WIRE_FLAG_MAC) && !has_secret(c))
		return reject(why, whycap, -EACCES,
			      "peer authenticates with a cluster secret but "
			      "none is configured here");
	if (!(flags & WIRE_FLAG_MAC) && has_secret(c))
		return reject(why, whycap, -EACCES,
			      "unauthenticated frame: peer has no cluster "
			      "secret configured");
	if (len < WIRE_HDR_LEN + tlen)
		return reject(why, whycap, -ENODATA,
			      "short frame: %zu bytes, need at least %zu", len,
			      (size_t)(WIRE_HDR_LEN + tlen));
	uint32_t plen = rd32(buf + 8);
	if (plen > max_payload(c))
		return reject(why, whycap, -EMSGSIZE,
			      "oversize payload: %u bytes, limit %u", plen,
			      max_payload(c));
	if ((size_t)plen != len - WIRE_HDR_LEN - tlen)
		return reject(why, whycap, -EBADMSG,
			      "length mismatch: header says %u payload bytes, "
			      "frame holds %zu",
			      plen, len - WIRE_HDR_LEN - tlen);

	size_t covered = WIRE_HDR_LEN + plen;
	if (has_secret(c)) {
		uint8_t mac[WIRE_MAC_LEN];
		int rc = frame_mac(c, buf, covered, mac);
		if (rc)
			return reject(why, whycap, rc, "HMAC failed");
		if (CRYPTO_memcmp(mac, buf + covered, WIRE_MAC_LEN) != 0)
			return reject(why, whycap, -EACCES,
				      "bad MAC: forged, corrupted, or the peer "
				      "uses another cluster secret");
	} else {
		uint32_t want = wire_crc32c(0, buf, covered);
		uint32_t got = rd32(buf + covered);
		if (want != got)
			return reject(why, whycap, -EBADMSG,
				      "bad checksum: crc32c %08x, frame says "
				      "%08x",
				      want, got);
	}

	uint64_t cid = rd64(buf + 12);
	if (cid != c->cluster_id)
		return reject(why, whycap, -EXDEV,
			      "wrong cluster id %016llx (ours is %016llx)",
			      (unsigned long long)cid,
			      (unsigned long long)c->cluster_id);
	uint8_t type = buf[5];
	if (type < 1 || type > WIRE_TYPE_MAX)
		return reject(why, whycap, -EPROTO, "unknown frame type %u",
			      type);

	f->type = type;
	f->flags = flags;
	f->cluster_id = cid;
	f->from = rd64(buf + 20);
	f->req_id = rd64(buf + 28);
	f->body = buf + WIRE_HDR_LEN;
	f->body_len = plen;
	if (type_has_kind(type)) {
		if (plen < WIRE_KIND_LEN) {
			memset(f, 0, sizeof *f);
			return reject(why, whycap, -EPROTO,
				      "%s without a request kind",
				      wire_type_name(type));
		}
		uint16_t kind = rd16(f->body);
		if (kind < 1 || kind > WIRE_KIND_MAX) {
			memset(f, 0, sizeof *f);
			return reject(why, whycap, -EPROTO,
				      "unknown request kind %u", kind);
		}
		f->kind = kind;
		f->body += WIRE_KIND_LEN;
		f->body_len -= WIRE_KIND_LEN;
	}
	if (f->body_len == 0)
		f->body = NULL;
	return 0;
}

/* Frame type name for logs. */
const char *wire_type_name(uint8_t type)
{
	switch (type) {
	case WIRE_RAFT:
		return "RAFT";
	case WIRE_REQUEST:
		return "REQUEST";
	case WIRE_REPLY:
		return "REPLY";
	}
	return "?";
}

/* Request kind name for logs. */
const char *wire_kind_name(uint16_t kind)
{
	static const char *const names[] = {
		"?",          "PROPOSE",  "STATUS",   "BLOCK_PUT", "BLOCK_GET",
		"BLOCK_HAS",  "READ_INDEX", "CONF",   "TRANSFER",  "SPARE_9",
		"SPARE_10",   "SPARE_11", "SPARE_12",
	};
	return kind <= WIRE_KIND_MAX ? names[kind] : "?";
}
