/*
 * fuzz_config.c — fuzz the configuration file parser (fs/config.c:
 * config_parse, and config_expand on the templates it accepted).
 *
 * Checks: a refusal says why, naming the file; what is accepted has every
 * string NUL-terminated within its field, at most RAFT_MAX_NODES members
 * with distinct ids >= 1 and addresses `member add` would take, and its
 * %i templates either expand or are refused with a reason.
 */
#include "fs/config.h"
#include "fs/node.h"
#include "tests/fuzz/fuzz_util.h"

#define TERMINATED(f) memchr((f), 0, sizeof(f))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config c; /* big: not on the stack */
	char err[512];
	uint8_t *text = fz_copy(data, size);
	err[0] = '\0';
	if (config_parse((const char *)text, size, "/etc/sandfs/fuzz.conf", &c,
			 err, sizeof err) != 0) {
		if (!TERMINATED(err) || !strstr(err, "fuzz.conf"))
			abort();
		free(text);
		return 0;
	}
	if (!TERMINATED(c.data) || !TERMINATED(c.secret_file) ||
	    !TERMINATED(c.tls_cert) || !TERMINATED(c.tls_key) ||
	    !TERMINATED(c.tls_ca) || !TERMINATED(c.log) ||
	    !TERMINATED(c.mount_options) || !TERMINATED(c.mountpoint))
		abort();
	if (c.n_peers > RAFT_MAX_NODES)
		abort();
	for (size_t i = 0; i < c.n_peers; i++) {
		char norm[RAFT_ADDR_MAX];
		if (c.peers[i].id == 0 || !TERMINATED(c.peers[i].addr) ||
		    node_parse_addr(c.peers[i].addr, norm, sizeof norm, err,
				    sizeof err) != 0)
			abort();
		for (size_t j = 0; j < i; j++)
			if (c.peers[j].id == c.peers[i].id)
				abort();
	}
	char out[CONFIG_PATH_MAX];
	for (raft_id id = 0; id < 3; id++) {
		const char *tmpl[] = {c.data, c.log};
		for (int k = 0; k < 2; k++) {
			err[0] = '\0';
			if (config_expand(tmpl[k], id, out, sizeof out, err,
					  sizeof err) != 0) {
				if (!err[0])
					abort();
			} else if (!TERMINATED(out)) {
				abort();
			}
		}
	}
	free(text);
	return 0;
}
