/* io.c - read and write loops for streams, where any count can come short,
 * and the one place a server sleeps: wait_fd_or_stop(). */

/* ppoll() is Linux's poll() with pselect()'s signal mask; glibc declares it
 * only for _GNU_SOURCE. */
#define _GNU_SOURCE
#include "lab.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

ssize_t read_retry(int fd, void *buf, size_t len)
{
    ssize_t n;

    do
        n = read(fd, buf, len);
    while (n == -1 && errno == EINTR);
    return n;
}

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n == -1) {
            if (errno == EINTR)
                continue; /* interrupted before writing anything: retry */
            return -1;
        }
        p += n; /* a short write: send the rest */
        len -= (size_t)n;
    }
    return 0;
}

int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags == -1)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

enum accept_action accept_error_action(int err)
{
    switch (err) {
    case EINTR:        /* a signal: the caller's loop checks stop_requested */
    case EAGAIN:       /* non-blocking socket, queue empty (EWOULDBLOCK too) */
    case ECONNABORTED: /* the client left while queued: take the next one */
    case EPROTO:       /* Linux passes on a new connection's network error; */
    case ENOPROTOOPT:  /* man 2 accept says to treat these like EAGAIN */
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENETDOWN:
    case ENETUNREACH:
    case EOPNOTSUPP:
    case ETIMEDOUT:
        return ACCEPT_RETRY;
    case EMFILE: /* out of descriptors (ours or the system's) or memory: */
    case ENFILE: /* the client stays queued; retrying at once would spin */
    case ENOBUFS:
    case ENOMEM:
        return ACCEPT_BACKOFF;
    default: /* EBADF, EINVAL, ENOTSOCK, EFAULT: a bug in this program */
        return ACCEPT_FATAL;
    }
}

int wait_fd_or_stop(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events, .revents = 0};
    struct timespec timeout, *tp = NULL;

    if (timeout_ms >= 0) {
        timeout.tv_sec = timeout_ms / 1000;
        timeout.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &timeout;
    }
    for (;;) {
        int n;
        if (stop_requested) {
            errno = EINTR;
            return -1;
        }
        /* SIGINT and SIGTERM are let in only for the length of this call:
         * one that came before it is pending and ends it at once. */
        n = ppoll(&pfd, 1, tp, stop_wait_mask());
        if (n == -1 && errno == EINTR)
            continue; /* the loop checks the flag; another signal: again */
        if (n == -1)
            return -1;
        /* A ready descriptor wins over a pending signal: ppoll() returns it
         * and puts the mask back with the stop still pending. */
        if (take_pending_stop()) {
            errno = EINTR;
            return -1;
        }
        return n > 0 ? 1 : 0;
    }
}

ssize_t read_or_stop(int fd, void *buf, size_t len)
{
    for (;;) {
        ssize_t n;
        if (wait_fd_or_stop(fd, POLLIN, -1) == -1)
            return -1;
        n = read(fd, buf, len); /* readable: returns without blocking */
        if (n == -1 && (errno == EINTR || errno == EAGAIN))
            continue;
        return n;
    }
}

int send_all_or_stop(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        /* MSG_DONTWAIT makes this one call non-blocking: it takes what fits
         * in the send buffer. A blocking send() of a large buffer would wait
         * inside the kernel, where a stop could not reach it. */
        ssize_t n = send(fd, p, len, MSG_DONTWAIT);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1; /* EPIPE, ECONNRESET: the caller logs it */
            if (wait_fd_or_stop(fd, POLLOUT, -1) == -1)
                return -1;
            continue;
        }
        p += n; /* a short send: the rest when there is room */
        len -= (size_t)n;
    }
    return 0;
}
