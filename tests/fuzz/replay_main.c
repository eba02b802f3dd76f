/*
 * replay_main.c — run fuzz inputs without libFuzzer: each argument is a
 * file whose bytes go through LLVMFuzzerTestOneInput once. Used to replay
 * the checked-in corpus with any compiler (tests/run, ctest).
 *
 * What the code under test writes to stderr while an input runs (the
 * storage layer reports every damaged record it refuses, as it should) is
 * dropped, unless SANDFS_FUZZ_VERBOSE=1: a corpus of damaged inputs would
 * otherwise print hundreds of expected error lines. If an input crashes,
 * its file name is printed on the real stderr before the process dies.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *current;   /* the input being run (test tool state) */
static int real_stderr = -1;

static void on_crash(int sig)
{
	if (real_stderr >= 0 && current) {
		static const char m[] = "fuzz replay: crashed on input ";
		(void)!write(real_stderr, m, sizeof m - 1);
		(void)!write(real_stderr, current, strlen(current));
		(void)!write(real_stderr, "\n", 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	const char *v = getenv("SANDFS_FUZZ_VERBOSE");
	int quiet = !(v && strcmp(v, "1") == 0);
	int null_fd = quiet ? open("/dev/null", O_WRONLY) : -1;
	real_stderr = dup(2);
	signal(SIGABRT, on_crash);
	signal(SIGSEGV, on_crash);
	signal(SIGBUS, on_crash);
	signal(SIGFPE, on_crash);
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
		current = argv[i];
		fflush(stderr);
		if (null_fd >= 0)
			dup2(null_fd, 2);
		LLVMFuzzerTestOneInput(buf, len);
		fflush(stderr);
		if (null_fd >= 0 && real_stderr >= 0)
			dup2(real_stderr, 2);
		current = NULL;
		free(buf);
		n++;
	}
	printf("replayed %d input(s)\n", n);
	return 0;
}
