/*
 * wire.h — the sandfs frame: what travels between nodes.
 *
 * A frame is a fixed 36-byte header, a payload and a trailer; all integers
 * are big-endian:
 *
 *   off  size  field
 *     0     4  magic "SFS1"
 *     4     1  version (WIRE_VERSION)
 *     5     1  type (enum wire_type)
 *     6     2  flags (WIRE_FLAG_*; unknown bits are rejected)
 *     8     4  length of the payload
 *    12     8  cluster id
 *    20     8  sender's node id ("from")
 *    28     8  request id (0 when the frame is not part of a request)
 *    36   len  payload
 *     …  4/16  trailer over header + payload: CRC32C (4 bytes) when no
 *              cluster secret is configured, or HMAC-SHA256 truncated to 16
 *              bytes, keyed by the cluster secret, when one is (then flags
 *              has WIRE_FLAG_MAC). The HMAC authenticates the peer: a node
 *              without the secret can neither forge nor alter a frame.
 *
 * Payload by type:
 *   WIRE_RAFT     a Raft message (raft_msg_encode/raft_msg_decode)
 *   WIRE_REQUEST  u16 kind (enum wire_kind), then the kind's body
 *   WIRE_REPLY    u16 kind (echoing the request), then the reply body
 * The body format of each kind belongs to the module that serves it.
 *
 * wire_decode() checks everything before trusting anything and says why it
 * rejected a frame; a rejected frame must be dropped, never half-used.
 */
#ifndef SANDFS_WIRE_H
#define SANDFS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC "SFS1"
#define WIRE_VERSION 1
#define WIRE_HDR_LEN 36u
#define WIRE_CRC_LEN 4u
#define WIRE_MAC_LEN 16u
#define WIRE_KIND_LEN 2u
#define WIRE_MAX_PAYLOAD_DEFAULT (64u << 20) /* 64 MiB */

/* flags */
#define WIRE_FLAG_MAC 0x0001u /* trailer is an HMAC, not a CRC32C */
#define WIRE_FLAGS_KNOWN WIRE_FLAG_MAC

enum wire_type {
	WIRE_RAFT = 1,
	WIRE_REQUEST = 2,
	WIRE_REPLY = 3,
};
#define WIRE_TYPE_MAX 3

/* Request kinds (first u16 of REQUEST/REPLY payloads). */
enum wire_kind {
	WIRE_KIND_PROPOSE = 1,    /* forward a proposal to the leader */
	WIRE_KIND_STATUS = 2,     /* node/cluster status */
	WIRE_KIND_BLOCK_PUT = 3,  /* store a data block on a peer */
	WIRE_KIND_BLOCK_GET = 4,  /* fetch a data block from a peer */
	WIRE_KIND_BLOCK_HAS = 5,  /* ask which blocks a peer holds */
	WIRE_KIND_READ_INDEX = 6, /* spare: linearizable read barrier */
	WIRE_KIND_CONF = 7,       /* membership change via leader */
	WIRE_KIND_TRANSFER = 8,   /* leader transfer via the leader */
	WIRE_KIND_SPARE_9 = 9,
	WIRE_KIND_SPARE_10 = 10,
	WIRE_KIND_SPARE_11 = 11,
	WIRE_KIND_SPARE_12 = 12,
};
#define WIRE_KIND_MAX 12

/* What both ends must agree on. secret may be NULL (secret_len 0): frames
 * then carry a CRC32C only. Borrowed by every call that takes it. */
struct wire_cfg {
	uint64_t cluster_id;
	const uint8_t *secret;
	size_t secret_len;
	uint32_t max_payload; /* 0 means WIRE_MAX_PAYLOAD_DEFAULT */
};

/*
 * A frame's contents. For encoding the caller fills type, from, req_id,
 * kind (REQUEST/REPLY only) and body/body_len; flags and cluster_id are
 * taken from the wire_cfg. After decoding, body points into the decoded
 * buffer (borrowed: valid while that buffer is) and body_len is the
 * payload length minus the kind prefix for REQUEST/REPLY.
 */
struct wire_frame {
	uint8_t type;   /* enum wire_type */
	uint16_t flags; /* WIRE_FLAG_* (decode only) */
	uint64_t cluster_id;
	uint64_t from;   /* sender's node id */
	uint64_t req_id; /* 0 if none */
	uint16_t kind;   /* enum wire_kind; REQUEST/REPLY only, else 0 */
	const uint8_t *body;
	size_t body_len;
};

/* Bytes a frame of this type with body_len bytes of body takes on the wire
 * (header + kind prefix if any + body + trailer). */
size_t wire_frame_len(const struct wire_cfg *c, uint8_t type, size_t body_len);

/* Encode f into buf (cap bytes). On success returns 0 and sets *out_len.
 * -EINVAL: unknown type or kind; -EMSGSIZE: payload above max_payload;
 * -ENOSPC: cap too small (nothing useful written); -ENOMEM: HMAC failed
 * to allocate. */
int wire_encode(const struct wire_cfg *c, const struct wire_frame *f,
		uint8_t *buf, size_t cap, size_t *out_len);

/* Like wire_encode into a new malloc()ed buffer (*out; caller frees). */
int wire_encode_alloc(const struct wire_cfg *c, const struct wire_frame *f,
		      uint8_t **out, size_t *out_len);

/*
 * Decode and verify one frame of exactly len bytes. On success returns 0
 * and fills *f (body borrowed from buf). Otherwise returns a negative errno
 * and writes a one-line reason into why (whycap bytes, may be 0):
 *   -ENODATA          short frame (less than header + trailer)
 *   -EPROTO           bad magic, unknown flags, unknown type, bad kind
 *   -EPROTONOSUPPORT  unknown version
 *   -EMSGSIZE         length field above max_payload
 *   -EBADMSG          length field disagrees with the frame size, bad CRC
 *   -EACCES           bad MAC, or the peer's and our secret settings differ
 *   -EXDEV            frame from another cluster (wrong cluster id)
 */
int wire_decode(const uint8_t *buf, size_t len, const struct wire_cfg *c,
		struct wire_frame *f, char *why, size_t whycap);

/* CRC32C (Castagnoli) of data, continuing from crc (start with 0). */
uint32_t wire_crc32c(uint32_t crc, const void *data, size_t len);

/* Name of a frame type / request kind for logs ("?" if unknown). */
const char *wire_type_name(uint8_t type);
const char *wire_kind_name(uint16_t kind);

#endif
