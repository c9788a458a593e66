#ifndef NOOPS_PROCFS_H
#define NOOPS_PROCFS_H
#include <sys/types.h>

/* CPU seconds (reaped children included), RSS and process count of `root` and its descendants;
 * root <= 0: nothing. */
void proc_tree(pid_t root, double *cpu_s, long *rss_bytes, int *count);
/* 1 when a TCP socket (v4 or v6) of this network namespace listens on `port`. */
int proc_listening(int port);
#endif
