/* io.c - read and write loops for streams, where any count can come short. */
#include "lab.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* A signal that asks the program to stop (stop_requested) must end a blocked
 * call, so these loops retry EINTR only while no stop was asked for. */
ssize_t read_retry(int fd, void *buf, size_t len)
{
    ssize_t n;

    do
        n = read(fd, buf, len);
    while (n == -1 && errno == EINTR && !stop_requested);
    return n;
}

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n;
        if (stop_requested) {
            errno = EINTR;
            return -1;
        }
        n = write(fd, p, len);
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

ssize_t read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;

    while (got < len) {
        ssize_t n = read_retry(fd, p + got, len - got);
        if (n == -1)
            return -1;
        if (n == 0)
            break; /* EOF */
        got += (size_t)n;
    }
    return (ssize_t)got;
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
