/* noops-init: PID 1 of images built by `noops image build` (docs/images.md).
 *
 * Starts the app's command in its own process group, forwards SIGTERM/SIGINT/SIGHUP to that
 * group, SIGKILLs it NOOPS_INIT_STOP_TIMEOUT_S after a SIGTERM, reaps every zombie, runs the
 * crontab's entries, serves the app's stats and readiness over HTTP, and exits with the app's
 * exit code after writing one last line that hostd reads back as the instance's reason:
 *     noops-init: exited with code 3 after 2.1 s
 * One process, one thread, one poll() loop; signals arrive through a self-pipe.  Built with
 * `gcc -static -O2` (with schedule.c and procfs.c) by the image build: it needs nothing from the
 * image (busybox's /bin/sh only for cron and readiness commands).
 *
 * `noops-init --cron-match 'M H DOM MON DOW' UNIXTIME` prints 1 or 0 (exit 0/1; 2: does not
 * parse): the cron parser's own test entry (tests/unit/imagebuild).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procfs.h"
#include "schedule.h"

#define MAX_JOBS 64
#define MAX_VARS 32
#define MAX_PORTS 16
#define READY_CMD_TIMEOUT_S 5.0

enum kind { CRON, EVERY, REBOOT };

struct job {
    enum kind kind;
    struct schedule sched;    /* CRON */
    double every_s, next_at;  /* EVERY: period and next monotonic due time */
    char *cmd;
    pid_t pid;                /* > 0 while a run is going on */
    double started;
};

static struct job jobs[MAX_JOBS];
static int njobs;
static char *vars[MAX_VARS];   /* NAME=value lines of the crontab: the jobs' environment */
static int nvars;
static int ports[MAX_PORTS];
static int nports;

static int sigpipe[2];
static pid_t app_pid;
static int app_status, app_done;
static int stopping, killed_on_timeout;
static double start_at, stop_deadline, stop_timeout_s = 5.0;
static const char *ready_cmd, *counters_path = "/run/noops/counters";
static pid_t ready_pid;
static double ready_started, ready_next;
static int ready_cmd_ok;

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void say(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(2, "noops-init: %s\n", line);
}

static int cron_match_cli(int argc, char **argv) {
    struct schedule j = {0};
    const char *rest;
    if (argc != 4 || !(rest = schedule_parse(argv[2], &j)) || *rest) {
        printf("error\n");
        return 2;
    }
    int m = schedule_matches(&j, (time_t)strtoll(argv[3], NULL, 10));
    printf("%d\n", m);
    return m ? 0 : 1;
}

/* ------------------------------------------------------------------ the crontab */

static double every_seconds(const char *s, const char **rest) {
    char *end;
    double n = strtod(s, &end);
    double unit = 0;
    if (*end == 's') unit = 1;
    else if (*end == 'm') unit = 60;
    else if (*end == 'h') unit = 3600;
    if (!unit || n <= 0 || (end[1] != ' ' && end[1] != '\t')) return 0;
    *rest = end + 1;
    return n * unit;
}

static void load_crontab(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return;   /* no crontab: no jobs */
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        size_t name = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
        if (name && p[name] == '=' && !isdigit((unsigned char)p[0])) {
            if (nvars < MAX_VARS) vars[nvars++] = strdup(p);
            continue;
        }
        if (njobs == MAX_JOBS) { say("crontab: more than %d entries; line %d and later ignored", MAX_JOBS, lineno); break; }
        struct job *j = &jobs[njobs];
        memset(j, 0, sizeof *j);
        const char *rest = NULL;
        if (strncmp(p, "@reboot", 7) == 0 && (p[7] == ' ' || p[7] == '\t')) {
            j->kind = REBOOT;
            rest = p + 7;
        } else if (strncmp(p, "@every", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
            j->kind = EVERY;
            const char *s = p + 6;
            while (*s == ' ' || *s == '\t') s++;
            if (!(j->every_s = every_seconds(s, &rest))) rest = NULL;
        } else {
            j->kind = CRON;
            rest = schedule_parse(p, &j->sched);
        }
        if (rest) while (*rest == ' ' || *rest == '\t') rest++;
        if (!rest || !*rest) { say("crontab line %d does not parse; ignored: %s", lineno, p); continue; }
        j->cmd = strdup(rest);
        njobs++;
    }
    fclose(f);
}

/* ------------------------------------------------------------------ children */

static void restore_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
}

/* /bin/sh -c cmd in a process group of its own, with the crontab's variables. */
static pid_t spawn_shell(const char *cmd) {
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        restore_signals();
        for (int i = 0; i < nvars; i++) putenv(vars[i]);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (pid > 0) setpgid(pid, pid);
    return pid;
}

static void run_job(struct job *j, double now) {
    if (j->pid > 0) { say("cron `%s` skipped: the last run is still going", j->cmd); return; }
    j->pid = spawn_shell(j->cmd);
    j->started = now;
    if (j->pid < 0) { say("cron `%s` could not start: %s", j->cmd, strerror(errno)); j->pid = 0; }
}

static void describe_status(char *out, size_t n, int status, double took) {
    if (WIFEXITED(status)) snprintf(out, n, "exited with code %d after %.1f s", WEXITSTATUS(status), took);
    else snprintf(out, n, "killed by signal %d (%s) after %.1f s", WTERMSIG(status), strsignal(WTERMSIG(status)), took);
}

static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        double now = now_mono();
        if (pid == app_pid) {
            app_done = 1;
            app_status = status;
            continue;
        }
        if (pid == ready_pid) {
            ready_pid = 0;
            ready_cmd_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            continue;
        }
        for (int i = 0; i < njobs; i++) {
            if (jobs[i].pid == pid) {
                char what[128];
                describe_status(what, sizeof what, status, now - jobs[i].started);
                say("cron `%s` %s", jobs[i].cmd, what);
                jobs[i].pid = 0;
            }
        }
        /* anything else: an orphan that ended up with us; reaped, nothing to say */
    }
}

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    (void)!write(sigpipe[1], &b, 1);
    errno = saved;
}

static void signal_jobs(int sig) {
    for (int i = 0; i < njobs; i++)
        if (jobs[i].pid > 0) kill(-jobs[i].pid, sig);
    if (ready_pid > 0) kill(-ready_pid, sig);
}

static void handle_signal(int sig, double now) {
    if (sig == SIGCHLD) { reap(); return; }
    if (app_done) return;
    kill(-app_pid, sig);
    if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
        stopping = 1;
        stop_deadline = now + stop_timeout_s;
        signal_jobs(SIGTERM);
    }
}

/* ------------------------------------------------------------------ stats and readiness */

/* 1 when ready; otherwise 0 and why in `why`. */
static int ready(char *why, size_t n) {
    if (app_done || stopping) { snprintf(why, n, "the app is stopping"); return 0; }
    for (int i = 0; i < nports; i++)
        if (!proc_listening(ports[i])) { snprintf(why, n, "port %d is not listening", ports[i]); return 0; }
    if (ready_cmd && !ready_cmd_ok) { snprintf(why, n, "the readiness command has not passed"); return 0; }
    snprintf(why, n, "ready");
    return 1;
}

static void check_ready_cmd(double now) {
    if (!ready_cmd) return;
    if (ready_pid > 0 && now - ready_started > READY_CMD_TIMEOUT_S) kill(-ready_pid, SIGKILL);
    if (ready_pid > 0 || now < ready_next) return;
    ready_pid = spawn_shell(ready_cmd);
    if (ready_pid < 0) ready_pid = 0;
    ready_started = now;
    ready_next = now + 1.0;
}

static int append(char *out, size_t cap, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= cap - *len) return -1;
    *len += w;
    return 0;
}

static void append_counters(char *out, size_t cap, size_t *len) {
    FILE *f = fopen(counters_path, "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char name[128], extra[2];
        double value;
        if (sscanf(line, "%127s %lf %1s", name, &value, extra) != 2) continue;
        if (!isalpha((unsigned char)name[0]) && name[0] != '_') continue;
        if (strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name)) continue;
        if (append(out, cap, len, "counter %s %.17g\n", name, value) != 0) break;
    }
    fclose(f);
}

static void answer(int fd, double now) {
    struct timeval tv = {0, 500000};   /* a client that sends nothing does not hold the loop up */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[1024];
    ssize_t n = recv(fd, req, sizeof req - 1, 0);
    if (n <= 0) return;
    req[n] = 0;
    char path[256] = "";
    sscanf(req, "GET %255s", path);
    static char body[65536];
    size_t len = 0;
    int status = 200;
    char why[128];
    if (strcmp(path, "/stats") == 0) {
        double cpu;
        long rss;
        int count;
        proc_tree(app_done ? 0 : app_pid, &cpu, &rss, &count);
        append(body, sizeof body, &len, "cpu_seconds %.3f\nmemory_bytes %ld\nprocesses %d\nuptime_seconds %.1f\nready %d\n",
               cpu, rss, count, now - start_at, ready(why, sizeof why));
        append_counters(body, sizeof body, &len);
    } else if (strcmp(path, "/ready") == 0) {
        status = ready(why, sizeof why) ? 200 : 503;
        append(body, sizeof body, &len, "%s%s\n", status == 200 ? "" : "not ready: ", why);
    } else {
        status = 404;
        append(body, sizeof body, &len, "paths: /stats /ready\n");
    }
    char head[256];
    int h = snprintf(head, sizeof head, "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n", status, status == 200 ? "OK" : status == 503 ? "Service Unavailable"
                     : "Not Found", len);
    (void)!send(fd, head, h, MSG_NOSIGNAL);
    (void)!send(fd, body, len, MSG_NOSIGNAL);
}

static int listen_on(int port) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int v6 = 1;
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
    if (fd >= 0) {
        int off = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v6, sizeof v6);
        if (bind(fd, (struct sockaddr *)&a6, sizeof a6) == 0 && listen(fd, 16) == 0) return fd;
        close(fd);
    }
    /* no IPv6 in this namespace: IPv4 only */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v6, sizeof v6);
    if (bind(fd, (struct sockaddr *)&a4, sizeof a4) == 0 && listen(fd, 16) == 0) return fd;
    close(fd);
    return -1;
}

/* ------------------------------------------------------------------ main loop */

static void read_settings(void) {
    const char *s;
    if ((s = getenv("NOOPS_INIT_STOP_TIMEOUT_S")) && atof(s) > 0) stop_timeout_s = atof(s);
    if ((s = getenv("NOOPS_INIT_COUNTERS")) && *s) counters_path = s;
    if ((s = getenv("NOOPS_INIT_READY_CMD")) && *s) ready_cmd = s;
    if ((s = getenv("NOOPS_INIT_READY_PORTS"))) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", s);
        char *save = NULL;
        for (char *p = strtok_r(buf, ", ", &save); p && nports < MAX_PORTS; p = strtok_r(NULL, ", ", &save))
            if (atoi(p) > 0 && atoi(p) < 65536) ports[nports++] = atoi(p);
    }
}

static void finish(void) {
    /* what the app left behind (its group) and the jobs go with it */
    kill(-app_pid, SIGKILL);
    signal_jobs(SIGKILL);
    char what[160];
    describe_status(what, sizeof what, app_status, now_mono() - start_at);
    if (killed_on_timeout) say("%s (the stop timeout of %g s passed)", what, stop_timeout_s);
    else say("%s", what);
    exit(WIFEXITED(app_status) ? WEXITSTATUS(app_status) : 128 + WTERMSIG(app_status));
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--cron-match") == 0) return cron_match_cli(argc, argv);
    int first = argc >= 2 && strcmp(argv[1], "--") == 0 ? 2 : 1;
    if (first >= argc) { say("usage: noops-init [--] command [argument...]"); return 2; }
    if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);   /* under the engine's init: orphans still come here */
    read_settings();

    if (pipe2(sigpipe, O_CLOEXEC | O_NONBLOCK) != 0) { say("pipe: %s", strerror(errno)); return 1; }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    int forwarded[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT};
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);   /* a log reader gone or a stats client that hung up must not end PID 1 */

    const char *crontab = getenv("NOOPS_INIT_CRONTAB");
    load_crontab(crontab && *crontab ? crontab : "/etc/noops/crontab");
    const char *port = getenv("NOOPS_INIT_STATS_PORT");
    int stats_port = port ? atoi(port) : 9100;
    int listener = stats_port > 0 ? listen_on(stats_port) : -1;
    if (stats_port > 0 && listener < 0) say("cannot serve stats on port %d: %s", stats_port, strerror(errno));

    start_at = now_mono();
    app_pid = fork();
    if (app_pid == 0) {
        setpgid(0, 0);
        restore_signals();
        execvp(argv[first], argv + first);
        say("cannot run %s: %s", argv[first], strerror(errno));
        _exit(127);
    }
    if (app_pid < 0) { say("fork: %s", strerror(errno)); return 1; }
    setpgid(app_pid, app_pid);
    say("started %s (pid %d), %d cron entries, stats on port %d", argv[first], app_pid, njobs, stats_port);

    for (int i = 0; i < njobs; i++) {
        if (jobs[i].kind == REBOOT) run_job(&jobs[i], start_at);
        if (jobs[i].kind == EVERY) jobs[i].next_at = start_at + jobs[i].every_s;
    }
    time_t last_minute = time(NULL) / 60;

    for (;;) {
        double now = now_mono();
        if (app_done) finish();
        if (stopping && !killed_on_timeout && now >= stop_deadline) {
            killed_on_timeout = 1;
            kill(-app_pid, SIGKILL);
        }
        if (!stopping) {
            time_t minute = time(NULL) / 60;
            if (minute != last_minute) {   /* at most one run per entry per minute, no catching up */
                last_minute = minute;
                for (int i = 0; i < njobs; i++)
                    if (jobs[i].kind == CRON && schedule_matches(&jobs[i].sched, minute * 60)) run_job(&jobs[i], now);
            }
            for (int i = 0; i < njobs; i++) {
                if (jobs[i].kind != EVERY || now < jobs[i].next_at) continue;
                run_job(&jobs[i], now);
                jobs[i].next_at += jobs[i].every_s;
                if (jobs[i].next_at < now) jobs[i].next_at = now + jobs[i].every_s;
            }
            check_ready_cmd(now);
        }
        /* wake for the next second boundary (cron), an @every due time or the stop deadline */
        double wake = (double)((long long)now + 1);
        for (int i = 0; i < njobs; i++)
            if (jobs[i].kind == EVERY && jobs[i].next_at < wake) wake = jobs[i].next_at;
        if (stopping && !killed_on_timeout && stop_deadline < wake) wake = stop_deadline;
        int timeout_ms = (int)((wake - now) * 1000) + 1;
        struct pollfd fds[2] = {{sigpipe[0], POLLIN, 0}, {listener, POLLIN, 0}};
        int ready_fds = poll(fds, listener >= 0 ? 2 : 1, timeout_ms < 1 ? 1 : timeout_ms);
        if (ready_fds <= 0) continue;
        if (fds[0].revents & POLLIN) {
            unsigned char sigs[64];
            ssize_t n;
            while ((n = read(sigpipe[0], sigs, sizeof sigs)) > 0)
                for (ssize_t i = 0; i < n; i++) handle_signal(sigs[i], now_mono());
        }
        if (listener >= 0 && (fds[1].revents & POLLIN)) {
            int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0) {
                answer(c, now_mono());
                close(c);
            }
        }
    }
}
