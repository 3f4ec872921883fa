/*
 * bench_memory.c - PSS of a Pool of 8 idle workers started by a caller
 * holding 1 GiB: prints pss_workers_kb (the 8 workers) and pss_pmd_kb
 * (broker, forker and workers: everything pmd runs).  Usage:
 * bench_memory MODULE [MIB]
 */
#include <sys/types.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"
#include "pmclient.h"

/* Sums the PSS of pid's children (pmd's: its forker and workers), their
 * number in *n. */
static long
children_pss(pid_t pid, long *n)
{
	char path[96], buf[8192], *p, *e;
	long sum = 0, v;
	FILE *fp;

	*n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid,
	    (int)pid);
	if ((fp = fopen(path, "re")) == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), fp) == NULL)
		buf[0] = '\0';
	fclose(fp);
	for (p = buf; *p != '\0'; p = e) {
		v = strtol(p, &e, 10);
		if (e == p)
			break;
		sum += bench_pss_kb((pid_t)v);
		(*n)++;
	}
	return sum;
}

int
main(int argc, char **argv)
{
	pm_pool_opts o;
	pm_bytes out;
	pm_conn *c;
	pm_pool *p;
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 1024, len;
	long kids, all, i;
	char *big;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_memory MODULE [MIB]\n");
		return 2;
	}
	len = mib << 20;
	if ((big = malloc(len)) == NULL)
		return 1;
	memset(big, 1, len);
	if ((c = pm_connect(NULL)) == NULL) {
		fprintf(stderr, "connect: %s\n", pm_last_message());
		return 1;
	}
	memset(&o, 0, sizeof(o));
	o.processes = 8;
	o.module = argv[1];
	if ((p = pm_pool_new(c, &o)) == NULL) {
		fprintf(stderr, "pool: %s\n", pm_last_message());
		return 1;
	}
	for (i = 0; i < 16; i++)	/* every worker started and ran */
		if (pm_pool_apply(p, "tiny", "", 0, &out) == PM_OK)
			pm_bytes_free(&out);
	sleep(1);
	all = children_pss(pm_daemon_pid(c), &kids);
	printf("caller_mib %zu\n", mib);
	printf("pmd_children %ld\n", kids);
	printf("pss_children_kb %ld\n", all);
	printf("pss_pmd_kb %ld\n", all + bench_pss_kb(pm_daemon_pid(c)));
	pm_pool_free(p);
	pm_disconnect(c);
	i = big[len - 1] == 1 ? 0 : 1;	/* it was held to the end */
	free(big);
	return (int)i;
}
