/*
 * replay_main.c — run fuzz inputs without libFuzzer: each argument is a
 * file whose bytes go through LLVMFuzzerTestOneInput once. Used to replay
 * the checked-in corpus with any compiler (tests/run, ctest).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	int n = 0;
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (!f) {
			perror(argv[i]);
			return 1;
		}
		uint8_t *buf = NULL;
		size_t len = 0, cap = 0;
		for (;;) {
			if (len == cap) {
				cap = cap ? cap * 2 : 4096;
				uint8_t *nb = realloc(buf, cap);
				if (!nb) {
					fprintf(stderr, "out of memory\n");
					return 1;
				}
				buf = nb;
			}
			size_t r = fread(buf + len, 1, cap - len, f);
			if (r == 0)
				break;
			len += r;
		}
		fclose(f);
		LLVMFuzzerTestOneInput(buf, len);
		free(buf);
		n++;
	}
	printf("replayed %d input(s)\n", n);
	return 0;
}
