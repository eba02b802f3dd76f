/*
 * fuzz_wire_cfg.h — the cluster id and secret shared by the wire fuzzer and
 * its seed-corpus generator, so seed frames decode in the harness.
 */
#ifndef SANDFS_FUZZ_WIRE_CFG_H
#define SANDFS_FUZZ_WIRE_CFG_H

#define FUZZ_CLUSTER_ID 0x53414e4446530001ull
#define FUZZ_SECRET "sandfs-fuzz-secret"

#endif
