/* What /proc says about the app: its process tree's CPU and memory, and the ports listening. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procfs.h"

#define MAX_PROCS 4096

struct proc { int pid, ppid; double cpu_s; long rss_pages; };

static int read_proc(int pid, struct proc *p) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *r = strrchr(buf, ')');   /* the command name may hold spaces and parentheses */
    if (!r) return -1;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     * cutime cstime priority nice threads itrealvalue starttime vsize rss */
    char state;
    int ppid;
    unsigned long utime, stime;
    long cutime, cstime, rss;
    if (sscanf(r + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld %*d %*d %*d %*d %*u %*u %ld",
               &state, &ppid, &utime, &stime, &cutime, &cstime, &rss) != 7)
        return -1;
    double tick = (double)sysconf(_SC_CLK_TCK);
    p->pid = pid;
    p->ppid = ppid;
    /* cutime/cstime: children this process already reaped, so short-lived workers count too */
    p->cpu_s = (utime + stime + cutime + cstime) / tick;
    p->rss_pages = rss;
    return 0;
}

void proc_tree(pid_t root, double *cpu_s, long *rss_bytes, int *count) {
    static struct proc procs[MAX_PROCS];
    static char in_tree[MAX_PROCS];
    int n = 0;
    *cpu_s = 0;
    *rss_bytes = 0;
    *count = 0;
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_PROCS)
        if (isdigit((unsigned char)e->d_name[0]) && read_proc(atoi(e->d_name), &procs[n]) == 0) n++;
    closedir(d);
    memset(in_tree, 0, n);
    int changed = 1;
    while (changed) {   /* a fixpoint: parents may be listed after their children */
        changed = 0;
        for (int i = 0; i < n; i++) {
            if (in_tree[i]) continue;
            int member = root > 0 && procs[i].pid == root;
            for (int k = 0; !member && k < n; k++) member = in_tree[k] && procs[k].pid == procs[i].ppid;
            if (member) in_tree[i] = changed = 1;
        }
    }
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < n; i++) {
        if (!in_tree[i]) continue;
        *cpu_s += procs[i].cpu_s;
        *rss_bytes += procs[i].rss_pages * page;
        (*count)++;
    }
}

int proc_listening(int port) {
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int f = 0; f < 2; f++) {
        FILE *fp = fopen(files[f], "r");
        if (!fp) continue;
        char line[512];
        int found = 0;
        while (!found && fgets(line, sizeof line, fp)) {
            char local[128];
            unsigned st;
            if (sscanf(line, " %*d: %127s %*s %x", local, &st) != 2) continue;
            char *colon = strrchr(local, ':');
            found = colon && st == 0x0A && (int)strtol(colon + 1, NULL, 16) == port;
        }
        fclose(fp);
        if (found) return 1;
    }
    return 0;
}

