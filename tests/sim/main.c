/*
 * main.c — the raft_sim command.
 *
 *   raft_sim --seeds N [--seed S] [--nodes K] [--steps M] [--jobs J] [-v]
 *   raft_sim --scenarios [--only NAME] [-v]
 *
 * Runs seeds S..S+N-1 (S defaults to 1); every failure prints
 * "FAIL seed=X nodes=K: <invariant> ..." and the command that replays it.
 * The last line is "N passed, M failed"; the exit status is non-zero on any
 * failure. --jobs forks J workers that split the seeds (default: one per
 * CPU, at most 8; one with -v so that the trace stays in order).
 * --mutate 1|2 breaks the simulated disk on purpose (forget the vote at
 * restart / lose the acknowledged log tail at a crash): a self-test that
 * the checks do catch such bugs; expect failures.
 */
#include "tests/sim/sim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct args {
	uint64_t seeds, seed;
	uint32_t nodes, steps, jobs;
	bool verbose, scenarios;
	const char *only;
	int mutate;
};

/* The seed being run, for the crash handler (main.c may hold globals). */
static volatile sig_atomic_t g_cur_seed = -1;
static volatile sig_atomic_t g_cur_nodes = 0;

/* Append the decimal form of v to buf at *k. */
static void put_dec(char *buf, size_t *k, long v)
{
	char tmp[24];
	size_t n = 0;
	if (v < 0)
		v = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n < sizeof tmp);
	while (n)
		buf[(*k)++] = tmp[--n];
}

/* A core crashing the process still names the seed that replays it. */
static void on_fatal(int sig)
{
	char buf[128];
	size_t k = 0;
	const char *a = "FAIL seed=";
	while (*a)
		buf[k++] = *a++;
	put_dec(buf, &k, (long)g_cur_seed);
	a = " nodes=";
	while (*a)
		buf[k++] = *a++;
	put_dec(buf, &k, (long)g_cur_nodes);
	a = ": process died with signal ";
	while (*a)
		buf[k++] = *a++;
	put_dec(buf, &k, sig);
	buf[k++] = '\n';
	ssize_t w = write(1, buf, k);
	(void)w;
	signal(sig, SIG_DFL);
	raise(sig);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: raft_sim --seeds N [--seed S] [--nodes K] [--steps M] "
		"[--jobs J] [--mutate 1|2] [-v]\n"
		"       raft_sim --scenarios [--only NAME] [-v]\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse(int argc, char **argv, struct args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *k = argv[i];
		uint64_t v = 0;
		if (!strcmp(k, "-v")) {
			a->verbose = true;
			continue;
		}
		if (!strcmp(k, "--scenarios")) {
			a->scenarios = true;
			continue;
		}
		if (!strcmp(k, "--only") && i + 1 < argc) {
			a->only = argv[++i];
			continue;
		}
		if (i + 1 >= argc || parse_u64(argv[i + 1], &v) != 0)
			return -EINVAL;
		i++;
		if (!strcmp(k, "--seeds"))
			a->seeds = v;
		else if (!strcmp(k, "--seed"))
			a->seed = v;
		else if (!strcmp(k, "--nodes") && v >= 1 && v <= 7)
			a->nodes = (uint32_t)v;
		else if (!strcmp(k, "--steps"))
			a->steps = (uint32_t)v;
		else if (!strcmp(k, "--jobs") && v >= 1 && v <= 64)
			a->jobs = (uint32_t)v;
		else if (!strcmp(k, "--mutate") && v <= 2)
			a->mutate = (int)v;
		else
			return -EINVAL;
	}
	return 0;
}

/* Run every seed S+w, S+w+stride, ...; print failures; count. */
static void run_seeds(const struct args *a, uint64_t w, uint64_t stride,
		      uint64_t *passed, uint64_t *failed)
{
	char why[SIM_FAIL_MAX];
	for (uint64_t k = w; k < a->seeds; k += stride) {
		struct sim_opts o = {0};
		o.seed = a->seed + k;
		o.nodes = a->nodes;
		o.verbose = a->verbose;
		o.mutate = a->mutate;
		g_cur_seed = (sig_atomic_t)o.seed;
		g_cur_nodes = (sig_atomic_t)a->nodes;
		if (sim_random_run(&o, a->steps, why, sizeof why) == 0) {
			(*passed)++;
			continue;
		}
		(*failed)++;
		printf("FAIL seed=%llu nodes=%u: %s\n  replay: raft_sim --seeds 1 "
		       "--seed %llu --nodes %u --steps %u -v\n",
		       (unsigned long long)o.seed, a->nodes, why,
		       (unsigned long long)o.seed, a->nodes, a->steps);
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	struct args a = {.seeds = 0, .seed = 1, .nodes = 3, .steps = 3000,
			 .jobs = 0};
	if (parse(argc, argv, &a) != 0 || (!a.scenarios && !a.seeds)) {
		usage();
		return 2;
	}
	signal(SIGSEGV, on_fatal);
	signal(SIGABRT, on_fatal);
	signal(SIGBUS, on_fatal);
	signal(SIGFPE, on_fatal);
	if (a.scenarios) {
		int passed = 0, failed = 0;
		sim_scenarios(a.verbose, a.only, &passed, &failed);
		printf("%d passed, %d failed\n", passed, failed);
		return failed ? 1 : 0;
	}
	if (!a.jobs) { /* default: one worker per CPU, one when tracing */
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		a.jobs = a.verbose || cpus < 1 ? 1 : (uint32_t)(cpus > 8 ? 8 : cpus);
	}
	uint64_t passed = 0, failed = 0;
	if (a.jobs <= 1 || a.seeds < 2) {
		run_seeds(&a, 0, 1, &passed, &failed);
	} else {
		int fds[64][2];
		pid_t pids[64];
		fflush(stdout);
		for (uint32_t w = 0; w < a.jobs; w++) {
			if (pipe(fds[w]) != 0) {
				perror("pipe");
				return 2;
			}
			pids[w] = fork();
			if (pids[w] < 0) {
				perror("fork");
				return 2;
			}
			if (pids[w] == 0) {
				uint64_t cnt[2] = {0, 0};
				close(fds[w][0]);
				run_seeds(&a, w, a.jobs, &cnt[0], &cnt[1]);
				fflush(stdout);
				ssize_t wr = write(fds[w][1], cnt, sizeof cnt);
				_exit(wr == (ssize_t)sizeof cnt ? 0 : 3);
			}
			close(fds[w][1]);
		}
		for (uint32_t w = 0; w < a.jobs; w++) {
			uint64_t cnt[2] = {0, 0};
			ssize_t rd = read(fds[w][0], cnt, sizeof cnt);
			close(fds[w][0]);
			int st = 0;
			waitpid(pids[w], &st, 0);
			if (rd != (ssize_t)sizeof cnt || !WIFEXITED(st) ||
			    WEXITSTATUS(st) != 0) {
				printf("FAIL worker %u died (status %d)\n", w,
				       st);
				failed++;
				continue;
			}
			passed += cnt[0];
			failed += cnt[1];
		}
	}
	printf("%llu passed, %llu failed\n", (unsigned long long)passed,
	       (unsigned long long)failed);
	return failed ? 1 : 0;
}
