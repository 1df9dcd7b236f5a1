/* Baselines for benches/compare.sh: what a small C program does with the
 * same work, on the same machine, in the same run. Built with gcc at run time.
 *
 *   baseline recv PORTFILE OUT        listen on 127.0.0.1:0, write the port to
 *                                     PORTFILE, accept one connection, read to
 *                                     EOF in 1 MiB reads; OUT "-" discards,
 *                                     otherwise write to OUT and fsync it
 *   baseline send PORT FILE [WINDOW]  connect to 127.0.0.1:PORT and sendfile(2)
 *                                     FILE from the page cache, at most WINDOW
 *                                     bytes per call (default 256 KiB, the
 *                                     size of ferryd's own chunks)
 *   baseline spawn N PROG [ARG...]    posix_spawn PROG and wait for it, N times;
 *                                     prints the median and the mean in µs, then
 *                                     this process's own CPU time per spawn+wait
 *                                     (getrusage(RUSAGE_SELF): user + system, not
 *                                     the children's) in µs and its context
 *                                     switches per spawn+wait (voluntary and not):
 *                                     median_us M mean_us A cpu_us C csw S
 *   baseline execfloor N PROG [ARG...]
 *                                     the kernel work of one ferryd exec, N
 *                                     times, without the protocol: per command
 *                                     two pipes, a vfork-style clone with a
 *                                     pidfd, three epoll registrations, a wait
 *                                     for the exit, the reap, the pipes read to
 *                                     EOF, every descriptor closed, in ferryd's
 *                                     order (see do_execfloor). PROG is a path
 *                                     (no PATH search). Prints as spawn does:
 *                                     median_us M mean_us A cpu_us C csw S
 *   baseline alt N CMD [:: CMD]...    run the commands in turn (A B C A B C ...),
 *                                     after 3 warm-up runs each, N times each,
 *                                     stdin, stdout and stderr on /dev/null; a
 *                                     command that fails stops it. Prints one
 *                                     line per command: median_us min_us max_us
 *   baseline echo PORTFILE            the bare UDP echo: bind 127.0.0.1:0, write
 *                                     the port to PORTFILE, then send every
 *                                     datagram back as it came (blocking
 *                                     recvfrom/sendto, default buffers, no
 *                                     check of any kind) until killed
 *   baseline flood PORT SECS KEYID    send forged ferry requests to 127.0.0.1:PORT
 *                                     as fast as one blocking sendto loop goes,
 *                                     for SECS seconds: valid framing and fields
 *                                     (a ping for KEYID, a fresh nonce, the
 *                                     current ts) behind a random tag, the
 *                                     costliest datagram for a server without
 *                                     the key (a JSON parse and an HMAC each);
 *                                     prints the count
 *   baseline sink PORTFILE            bind a UDP socket on 127.0.0.1:0, write
 *                                     its port, and never read it (the kernel
 *                                     drops what does not fit its buffer)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Writes the port of fd's address to portfile (via a rename, so a reader sees it whole). */
static void write_port(int fd, const char *portfile) {
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &al) < 0) die("getsockname");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", portfile);
    FILE *pf = fopen(tmp, "w");
    if (!pf) die(tmp);
    fprintf(pf, "%d\n", ntohs(a.sin_port));
    if (fclose(pf) != 0 || rename(tmp, portfile) < 0) die(portfile);
}

/* 127.0.0.1:port (port 0: any free one, chosen at bind). */
static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A socket of the given type bound to a free loopback port. */
static int bound_loopback(int type) {
    int s = socket(AF_INET, type, 0);
    if (s < 0) die("socket");
    struct sockaddr_in a = loopback(0);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    return s;
}

static int do_recv(const char *portfile, const char *out) {
    int l = bound_loopback(SOCK_STREAM);
    if (listen(l, 1) < 0) die("listen");
    write_port(l, portfile);
    int s = accept(l, NULL, NULL);
    if (s < 0) die("accept");
    close(l);
    int fd = -1;
    if (strcmp(out, "-") != 0) {
        fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) die(out);
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf) die("malloc");
    long long total = 0;
    for (;;) {
        ssize_t n = read(s, buf, cap);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read");
        if (n == 0) break;
        total += n;
        for (ssize_t w = 0; fd >= 0 && w < n;) {
            ssize_t k = write(fd, buf + w, n - w);
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) die("write");
            w += k;
        }
    }
    if (fd >= 0 && (fsync(fd) < 0 || close(fd) < 0)) die("fsync");
    close(s);
    fprintf(stderr, "received %lld bytes\n", total);
    return 0;
}

static int do_send(int port, const char *path, size_t window) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die(path);
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket");
    struct sockaddr_in a = loopback(port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    off_t off = 0;
    while (off < st.st_size) {
        size_t want = (size_t)(st.st_size - off) < window ? (size_t)(st.st_size - off) : window;
        ssize_t n = sendfile(s, fd, &off, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("sendfile");
        if (n == 0) break;
    }
    if (shutdown(s, SHUT_WR) < 0) die("shutdown");
    /* Wait for the receiver to finish (its close), as a client waits for "done". */
    char b;
    while (read(s, &b, 1) > 0) {
    }
    close(s);
    close(fd);
    return 0;
}

static int cmp_ll(const void *x, const void *y) {
    long long a = *(const long long *)x, b = *(const long long *)y;
    return (a > b) - (a < b);
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int do_spawn(int n, char **argv) {
    if (n < 1 || n > 1000000) {
        fprintf(stderr, "spawn: N out of range\n");
        return 2;
    }
    long long *ns = calloc(n, sizeof *ns);
    if (!ns) die("calloc");
    long long sum = 0;
    struct rusage r0, r1;
    if (getrusage(RUSAGE_SELF, &r0) < 0) die("getrusage");
    for (int i = 0; i < n; i++) {
        long long t0 = now_ns();
        pid_t pid;
        int e = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
        if (e != 0) {
            errno = e;
            die("posix_spawn");
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR) die("waitpid");
        ns[i] = now_ns() - t0;
        sum += ns[i];
    }
    if (getrusage(RUSAGE_SELF, &r1) < 0) die("getrusage");
    qsort(ns, n, sizeof *ns, cmp_ll);
#define TV_US(t) ((t).tv_sec * 1e6 + (t).tv_usec)
    double cpu = TV_US(r1.ru_utime) + TV_US(r1.ru_stime) - TV_US(r0.ru_utime) - TV_US(r0.ru_stime);
    long csw = (r1.ru_nvcsw + r1.ru_nivcsw) - (r0.ru_nvcsw + r0.ru_nivcsw);
    printf("median_us %.1f mean_us %.1f cpu_us %.1f csw %.2f\n", ns[n / 2] / 1000.0, sum / 1000.0 / n, cpu / n,
           (double)csw / n);
    return 0;
}

/* ---- execfloor: ferryd's exec path in plain C (src/server/spawn.rs and
 * src/server/ops/exec.rs), one syscall for each of ferryd's, in its order.
 * What ferryd does beyond this per exec is its protocol (the request's read,
 * the exit frame's send, the sleep between them) and its own user space. */

/* The signals whose handlers ferryd's child resets (the daemon's handlers,
 * and SIGPIPE, which Rust ignores): one sigaction each in the child. */
static const int reset_sigs[] = {SIGPIPE, SIGHUP, SIGINT, SIGBUS, SIGSEGV, SIGTERM, SIGXFSZ};

struct child_args {
    char **argv;
    int fds[3]; /* what becomes the child's 0, 1 and 2 */
    const char *cwd;
};

/* The child, from clone to execve, on its own stack, sharing our memory (as
 * child_main in spawn.rs): handlers to default, 0..2 from the pipes and
 * /dev/null made blocking, a process group of its own, the cwd, an empty
 * signal mask, execve. */
static int floor_child(void *p) {
    struct child_args *a = p;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (size_t i = 0; i < sizeof reset_sigs / sizeof reset_sigs[0]; i++) sigaction(reset_sigs[i], &dfl, NULL);
    for (int i = 0; i < 3; i++) {
        if (dup2(a->fds[i], i) < 0) _exit(127);
        int fl = fcntl(i, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK) && fcntl(i, F_SETFL, fl & ~O_NONBLOCK) < 0) _exit(127);
    }
    if (setpgid(0, 0) < 0 || chdir(a->cwd) < 0) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(a->argv[0], a->argv, environ);
    _exit(127);
}

static int do_execfloor(int n, char **argv) {
    if (n < 1 || n > 1000000) {
        fprintf(stderr, "execfloor: N out of range\n");
        return 2;
    }
    /* Made once, as ferryd makes them once: the epoll set, /dev/null for
     * stdin, the child's stack (with a guard page), the cwd. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int null_in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    size_t stack_len = 64 * 1024 + 4096;
    char *stack = mmap(NULL, stack_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    char cwd[4096];
    if (ep < 0 || null_in < 0 || stack == MAP_FAILED || !getcwd(cwd, sizeof cwd)) die("execfloor setup");
    mprotect(stack, 4096, PROT_NONE);
    long long *ns = calloc(n, sizeof *ns);
    if (!ns) die("calloc");
    long long sum = 0;
    struct rusage r0, r1;
    if (getrusage(RUSAGE_SELF, &r0) < 0) die("getrusage");
    for (int i = 0; i < n; i++) {
        long long t0 = now_ns();
        /* Two pipes, non-blocking and close-on-exec on both ends (spawn::pipe). */
        int out[2], err[2];
        if (pipe2(out, O_NONBLOCK | O_CLOEXEC) < 0 || pipe2(err, O_NONBLOCK | O_CLOEXEC) < 0) die("pipe2");
        /* Every signal blocked across the clone, the mask restored after
         * (Spawner::spawn); the child clears it before execve. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        struct child_args a = {.argv = argv, .fds = {null_in, out[1], err[1]}, .cwd = cwd};
        int pidfd = -1;
        pid_t pid = clone(floor_child, stack + stack_len, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &a, &pidfd);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pid < 0 || pidfd < 0) die("clone");
        /* The read ends and the pidfd into the poll, edge-triggered, with
         * the events mio asks for (register_pipes, register_child). */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET};
        ev.data.u64 = 1;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, out[0], &ev) < 0) die("epoll_ctl");
        ev.data.u64 = 2;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, err[0], &ev) < 0) die("epoll_ctl");
        ev.data.u64 = 4;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, pidfd, &ev) < 0) die("epoll_ctl");
        /* Sleep until the exit: the write ends are still ours, so the pipes
         * do not hang up first and the pidfd is the only event (exec.rs). A
         * program that writes wakes us for its output: read it as ferryd does. */
        char buf[65536];
        for (int exited = 0; !exited;) {
            struct epoll_event got[8];
            int k = epoll_wait(ep, got, 8, -1);
            if (k < 0 && errno != EINTR) die("epoll_wait");
            for (int j = 0; j < k; j++) {
                if (got[j].data.u64 == 4) exited = 1;
                else
                    while (read(got[j].data.u64 == 1 ? out[0] : err[0], buf, sizeof buf) > 0) {
                    }
            }
        }
        /* Reap (Child::try_wait: waitpid WNOHANG); the pidfd is closed with
         * the reap, then our write ends; then each pipe read to its EOF and
         * closed (the close takes it out of the epoll set: no EPOLL_CTL_DEL,
         * as in ferryd). */
        int st;
        if (waitpid(pid, &st, WNOHANG) != pid) die("waitpid");
        close(pidfd);
        close(out[1]);
        close(err[1]);
        for (int *p = out;; p = err) {
            ssize_t r;
            while ((r = read(p[0], buf, sizeof buf)) > 0) {
            }
            if (r < 0 && errno != EAGAIN) die("read");
            close(p[0]);
            if (p == err) break;
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "execfloor: %s failed (status %d)\n", argv[0], st);
            return 1;
        }
        ns[i] = now_ns() - t0;
        sum += ns[i];
    }
    if (getrusage(RUSAGE_SELF, &r1) < 0) die("getrusage");
    qsort(ns, n, sizeof *ns, cmp_ll);
    double cpu = TV_US(r1.ru_utime) + TV_US(r1.ru_stime) - TV_US(r0.ru_utime) - TV_US(r0.ru_stime);
    long csw = (r1.ru_nvcsw + r1.ru_nivcsw) - (r0.ru_nvcsw + r0.ru_nivcsw);
    printf("median_us %.1f mean_us %.1f cpu_us %.1f csw %.2f\n", ns[n / 2] / 1000.0, sum / 1000.0 / n, cpu / n,
           (double)csw / n);
    return 0;
}

/* One run of argv (PATH searched), its stdio on /dev/null; returns ns, exits on failure. */
static long long run_once(char **argv) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    for (int fd = 0; fd < 3; fd++)
        posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
    long long t0 = now_ns();
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        errno = e;
        die(argv[0]);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) die("waitpid");
    long long dt = now_ns() - t0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "alt: %s failed (status %d)\n", argv[0], st);
        exit(1);
    }
    return dt;
}

static int do_alt(int n, int argc, char **argv) {
    enum { MAXCMD = 8 };
    char **cmds[MAXCMD];
    int k = 0;
    cmds[k++] = argv;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "::") == 0) {
            argv[i] = NULL;
            if (k == MAXCMD || i + 1 >= argc) {
                fprintf(stderr, "alt: at most %d commands, none empty\n", MAXCMD);
                return 2;
            }
            cmds[k++] = argv + i + 1;
        }
    if (n < 1 || n > 100000) {
        fprintf(stderr, "alt: N out of range\n");
        return 2;
    }
    long long *ns = calloc((size_t)n * k, sizeof *ns);
    if (!ns) die("calloc");
    for (int w = 0; w < 3; w++)
        for (int c = 0; c < k; c++) run_once(cmds[c]);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < k; c++) ns[(size_t)c * n + i] = run_once(cmds[c]);
    for (int c = 0; c < k; c++) {
        long long *v = ns + (size_t)c * n;
        qsort(v, n, sizeof *v, cmp_ll);
        printf("%.1f %.1f %.1f\n", v[n / 2] / 1000.0, v[0] / 1000.0, v[n - 1] / 1000.0);
    }
    return 0;
}

static int do_echo(const char *portfile) {
    int s = bound_loopback(SOCK_DGRAM);
    write_port(s, portfile);
    char buf[65536];
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &pl);
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            die("recvfrom");
        }
        /* A full buffer or a gone peer loses the datagram, as the network may. */
        while (sendto(s, buf, n, 0, (struct sockaddr *)&peer, pl) < 0 && errno == EINTR) {
        }
    }
    return 0;
}

static unsigned long long xorshift(unsigned long long *x) {
    *x ^= *x >> 12, *x ^= *x << 25, *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dULL;
}

static int do_flood(int port, double secs, const char *key_id) {
    if (!(secs > 0 && secs <= 3600) || strlen(key_id) > 200) {
        fprintf(stderr, "flood: SECS in (0, 3600], KEYID at most 200 bytes\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) die("socket");
    struct sockaddr_in a = loopback(port);
    unsigned char buf[512];
    unsigned long long x = 0x9e3779b97f4a7c15ULL ^ (unsigned long long)now_ns();
    long long until = now_ns() + (long long)(secs * 1e9), count = 0;
    while (now_ns() < until) {
        for (int k = 0; k < 64; k++) {
            int hl = snprintf((char *)buf + 36, sizeof buf - 36,
                              "{\"key_id\":\"%s\",\"nonce\":\"%016llx%016llx\",\"ts\":%lld,\"type\":\"ping\"}",
                              key_id, xorshift(&x), xorshift(&x), (long long)time(NULL));
            for (int i = 0; i < 32; i += 8) {
                unsigned long long r = xorshift(&x);
                memcpy(buf + i, &r, 8);
            }
            uint32_t l = htonl((uint32_t)hl);
            memcpy(buf + 32, &l, 4);
            if (sendto(s, buf, 36 + hl, 0, (struct sockaddr *)&a, sizeof a) >= 0) count++;
        }
    }
    printf("%lld\n", count);
    return 0;
}

static int do_sink(const char *portfile) {
    int s = bound_loopback(SOCK_DGRAM);
    write_port(s, portfile);
    for (;;) pause();
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "recv") == 0) return do_recv(argv[2], argv[3]);
    if (argc >= 4 && strcmp(argv[1], "send") == 0)
        return do_send(atoi(argv[2]), argv[3], argc >= 5 ? (size_t)atol(argv[4]) : 256 * 1024);
    if (argc >= 4 && strcmp(argv[1], "spawn") == 0) return do_spawn(atoi(argv[2]), argv + 3);
    if (argc >= 4 && strcmp(argv[1], "execfloor") == 0) return do_execfloor(atoi(argv[2]), argv + 3);
    if (argc >= 4 && strcmp(argv[1], "alt") == 0) return do_alt(atoi(argv[2]), argc - 3, argv + 3);
    if (argc >= 3 && strcmp(argv[1], "echo") == 0) return do_echo(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "flood") == 0) return do_flood(atoi(argv[2]), atof(argv[3]), argv[4]);
    if (argc >= 3 && strcmp(argv[1], "sink") == 0) return do_sink(argv[2]);
    fprintf(stderr, "usage: baseline recv PORTFILE OUT | send PORT FILE [WINDOW] | spawn N PROG [ARG...]\n       | execfloor N PROG [ARG...] | alt N CMD [:: CMD]...\n"
                    "       | echo PORTFILE | flood PORT SECS KEYID | sink PORTFILE\n");
    return 2;
}
