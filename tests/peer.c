/*
 * peer - one client that behaves well or badly on purpose, for the tests.
 *
 *   peer [-b ADDR] [-p PORT] [-v] MODE [BYTES]
 *
 * MODE is one of:
 *   echo N     send N bytes while reading, half-close, check that exactly
 *              those N bytes come back, then EOF
 *   owed N     send N bytes without reading, half-close, and only then read:
 *              the server must still send all it owes after our FIN
 *   reset N    send N bytes, then close with SO_LINGER {on, 0}: the kernel
 *              sends RST instead of FIN (a peer that "resets")
 *   hangup N   send N bytes (N < 64 KiB) held back with TCP_CORK, then
 *              close at once without reading: Linux sends the data and our
 *              FIN in one segment, so the server is in CLOSE_WAIT before it
 *              echoes a byte. Its echo meets our closed socket, our kernel
 *              answers RST, and its next write fails with EPIPE and raises
 *              SIGPIPE (an RST in ESTABLISHED would give ECONNRESET, and no
 *              signal: see tcp_reset() in the kernel).
 *   idle       connect, send nothing, wait until killed
 *   partial N  send N bytes (half a message) and wait until killed
 *   flood N    send N bytes and never read (blocks when buffers fill)
 *   backlog N  send up to N bytes without reading, so that the server's
 *              echo backs up, until SIGUSR1; then read back every byte
 *              sent, print "drained BYTES", and stay connected, idle, until
 *              killed (a backlog that drained, then a quiet client)
 *   cycle N    N times in a row: connect, echo 100 bytes, close
 *
 * -v prints "connected LOCAL-ADDR" once connected, so a test can wait for it
 * and match the server's "accepted" line. Exits 0 when the mode's check
 * passes, 1 otherwise. The bytes sent are a fixed pattern with NUL bytes.
 */
#define _DEFAULT_SOURCE /* TCP_CORK, a Linux option, for hangup */
#include "lab.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

static const char usage[] =
    "usage: peer [-b ADDR] [-p PORT] [-v] MODE [BYTES]\n"
    "modes: echo owed reset hangup idle partial flood backlog cycle\n";

static unsigned char pattern_byte(size_t i)
{
    return (unsigned char)(i % 251);
}

static void fill_pattern(unsigned char *buf, size_t offset, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern_byte(offset + i);
}

static int connect_peer(const char *addr, const char *port, bool verbose)
{
    int fd = open_connection(addr, port);

    if (fd != -1 && verbose) {
        struct sockaddr_storage local;
        socklen_t len = sizeof local;
        char text[ADDR_TEXT_MAX];
        if (getsockname(fd, (struct sockaddr *)&local, &len) == -1)
            die_errno("getsockname");
        printf("connected %s\n",
               format_addr((struct sockaddr *)&local, len, text, sizeof text));
        fflush(stdout);
    }
    return fd;
}

/* Send LEN pattern bytes, blocking. */
static int send_pattern(int fd, size_t len)
{
    unsigned char buf[16384];

    for (size_t sent = 0; sent < len;) {
        size_t n = len - sent < sizeof buf ? len - sent : sizeof buf;
        fill_pattern(buf, sent, n);
        if (write_all(fd, buf, n) == -1) {
            warn_errno("write");
            return -1;
        }
        sent += n;
    }
    return 0;
}

/* Read until EOF, checking that exactly the pattern's first LEN bytes come
 * back, starting at offset GOT. */
static int expect_pattern(int fd, size_t len, size_t got)
{
    unsigned char buf[16384];

    for (;;) {
        ssize_t n = read_retry(fd, buf, sizeof buf);
        if (n == -1) {
            warn_errno("read");
            return -1;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++, got++)
            if (got >= len || buf[i] != pattern_byte(got)) {
                warn_msg("echo differs at byte %zu", got);
                return -1;
            }
    }
    if (got != len) {
        warn_msg("echo ended after %zu of %zu bytes", got, len);
        return -1;
    }
    return 0;
}

/* Send LEN bytes while reading the echo, so neither side's buffers fill
 * up; half-close; then read the rest and check all of it. */
static int do_echo(int fd, size_t len)
{
    unsigned char out[16384], in[16384];
    size_t sent = 0, got = 0;

    while (sent < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
        if (poll(&p, 1, -1) == -1) {
            if (errno == EINTR)
                continue;
            warn_errno("poll");
            return -1;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read_retry(fd, in, sizeof in);
            if (n <= 0) {
                warn_msg("connection ended after %zu bytes sent", sent);
                return -1;
            }
            for (ssize_t i = 0; i < n; i++, got++)
                if (got >= sent || in[i] != pattern_byte(got)) {
                    warn_msg("echo differs at byte %zu", got);
                    return -1;
                }
        }
        if (p.revents & POLLOUT) {
            size_t n = len - sent < sizeof out ? len - sent : sizeof out;
            fill_pattern(out, sent, n);
            ssize_t w = write(fd, out, n); /* poll said it won't block */
            if (w == -1 && errno != EINTR) {
                warn_errno("write");
                return -1;
            }
            if (w > 0)
                sent += (size_t)w;
        }
    }
    if (shutdown(fd, SHUT_WR) == -1) {
        warn_errno("shutdown");
        return -1;
    }
    return expect_pattern(fd, len, got);
}

static volatile sig_atomic_t drain_now = 0;

static void on_sigusr1(int signo)
{
    (void)signo;
    drain_now = 1;
}

/* Wait until FD is readable (or, if WRITING, writable), or until SIGUSR1
 * came: pselect() unblocks SIGUSR1 only while it waits, so a signal can
 * not slip in between the check of drain_now and the wait. A ready FD wins
 * over a pending signal, which pselect() then leaves pending: ask for it. */
static int wait_fd(int fd, bool writing, const sigset_t *wait_mask)
{
    fd_set set;
    sigset_t pending;
    /* ThreadSanitizer takes a signal itself and runs our handler later, at
     * a call of its choosing: wake up now and then so the loop sees it. */
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

    FD_ZERO(&set);
    FD_SET(fd, &set);
    if (pselect(fd + 1, writing ? NULL : &set, writing ? &set : NULL, NULL,
                &tick, wait_mask) == -1 && errno != EINTR) {
        warn_errno("pselect");
        return -1;
    }
    if (sigpending(&pending) == -1) {
        warn_errno("sigpending");
        return -1;
    }
    if (sigismember(&pending, SIGUSR1) == 1)
        drain_now = 1;
    return 0;
}

/* backlog: send without reading until SIGUSR1 (or LEN bytes), then read
 * back all that was sent and check it. */
static int do_backlog(int fd, size_t len)
{
    unsigned char buf[16384];
    size_t sent = 0, got = 0;
    sigset_t usr1, wait_mask;
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &usr1, &wait_mask) == -1 ||
        sigaction(SIGUSR1, &sa, NULL) == -1)
        die_errno("sigaction SIGUSR1");
    if (set_nonblocking(fd) == -1)
        die_errno("fcntl O_NONBLOCK");

    while (sent < len && !drain_now) {
        size_t n = len - sent < sizeof buf ? len - sent : sizeof buf;
        fill_pattern(buf, sent, n);
        ssize_t w = write(fd, buf, n);
        if (w > 0) {
            sent += (size_t)w;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(fd, true, &wait_mask) == -1)
                return -1;
        } else if (errno != EINTR) {
            warn_errno("write");
            return -1;
        }
    }
    while (got < sent) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) {
            warn_msg("echo ended after %zu of %zu bytes", got, sent);
            return -1;
        }
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (wait_fd(fd, false, &wait_mask) == -1)
                    return -1;
                continue;
            }
            if (errno == EINTR)
                continue;
            warn_errno("read");
            return -1;
        }
        for (ssize_t i = 0; i < n; i++, got++)
            if (got >= sent || buf[i] != pattern_byte(got)) {
                warn_msg("echo differs at byte %zu", got);
                return -1;
            }
    }
    printf("drained %zu\n", sent);
    fflush(stdout);
    for (;;)
        pause(); /* until a signal kills us */
}

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT, *mode;
    bool verbose = false;
    long bytes = 0;
    int opt, fd, rc = 0;

    set_program_name(argv[0]);
    while ((opt = getopt(argc, argv, ":b:p:v")) != -1) {
        switch (opt) {
        case 'b':
            addr = optarg;
            break;
        case 'p':
            port = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        default:
            usage_error(usage, "bad option -%c", optopt);
        }
    }
    if (optind >= argc)
        usage_error(usage, "no mode");
    mode = argv[optind];
    if (optind + 1 < argc &&
        !parse_number(argv[optind + 1], 0, LONG_MAX, &bytes))
        usage_error(usage, "bad byte count '%s'", argv[optind + 1]);
    if (ignore_sigpipe() == -1)
        die_errno("sigaction SIGPIPE");

    if (strcmp(mode, "cycle") == 0) {
        for (long i = 0; i < bytes; i++) {
            fd = connect_peer(addr, port, false);
            if (fd == -1 || do_echo(fd, 100) == -1)
                return 1;
            close(fd);
        }
        return 0;
    }

    fd = connect_peer(addr, port, verbose);
    if (fd == -1)
        return 1;
    if (strcmp(mode, "echo") == 0) {
        rc = do_echo(fd, (size_t)bytes);
    } else if (strcmp(mode, "owed") == 0) {
        if ((rc = send_pattern(fd, (size_t)bytes)) == 0) {
            if ((rc = shutdown(fd, SHUT_WR)) == -1)
                warn_errno("shutdown");
            else
                rc = expect_pattern(fd, (size_t)bytes, 0);
        }
    } else if (strcmp(mode, "reset") == 0) {
        struct linger abortive = {.l_onoff = 1, .l_linger = 0};
        rc = send_pattern(fd, (size_t)bytes);
        if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive))
            die_errno("setsockopt SO_LINGER");
    } else if (strcmp(mode, "hangup") == 0) {
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one) == -1)
            die_errno("setsockopt TCP_CORK");
        rc = send_pattern(fd, (size_t)bytes); /* close() below sends it */
    } else if (strcmp(mode, "idle") == 0 || strcmp(mode, "partial") == 0) {
        if ((rc = send_pattern(fd, (size_t)bytes)) == 0)
            for (;;)
                pause(); /* until a signal kills us */
    } else if (strcmp(mode, "backlog") == 0) {
        rc = do_backlog(fd, (size_t)bytes);
    } else if (strcmp(mode, "flood") == 0) {
        rc = send_pattern(fd, (size_t)bytes);
        for (;;)
            pause();
    } else {
        usage_error(usage, "unknown mode '%s'", mode);
    }
    if (close(fd) == -1)
        warn_errno("close");
    return rc == 0 ? 0 : 1;
}
