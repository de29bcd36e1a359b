/*
 * stop_shim.c - an LD_PRELOAD library for the tests: it sends the program
 * SIGTERM at the worst moment, just before a call that would block.
 *
 *   LD_PRELOAD=tests/stop_shim.so LAB_STOP_BEFORE=WHEN PROGRAM ...
 *
 * WHEN is one of:
 *   wait   the first accept, accept4, poll, ppoll, select, pselect,
 *          epoll_wait or epoll_pwait: where a server waits for a client
 *   idle   the first wait once a client is connected: a read, readv,
 *          recv, recvfrom or recvmsg on a socket with no bytes waiting (a
 *          blocking server's wait for the client), or any of the calls
 *          above after accept() has returned a client
 *
 * A server that checks a "stop requested" flag and then calls accept() has
 * a window between the two: a signal landing there sets the flag after it
 * was checked, and accept() then waits for a client that may never come.
 * The window is a few instructions wide, so a test that sends SIGTERM from
 * outside almost never hits it; this library hits it every time.
 *
 * The signal goes, once, to the process that loaded the library (the
 * server; a forked child sends it to its parent), with kill(), as any
 * SIGTERM from outside would. When the calling thread does not block
 * SIGTERM, the kernel runs its handler before kill() returns, so the flag
 * is set before the real call starts. Then the real call runs.
 *
 * The wrappers find the real functions with dlsym(RTLD_NEXT, name): the
 * next definition after this library, libc's (or a sanitizer's). They only
 * pass their arguments on, so this file includes none of the headers that
 * declare the socket, poll and epoll calls: their pointer arguments stay
 * void * (the same bits), and glibc's own prototypes cannot clash with ours
 * (with _GNU_SOURCE, glibc declares accept() with a transparent union).
 * select() and pselect() keep their real types: <stdlib.h> declares them.
 *
 * Built by the Makefile as tests/stop_shim.so (-shared -fPIC).
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum when { NEVER, BEFORE_WAIT, WHEN_IDLE };

static enum when stop_when = NEVER;
static pid_t server_pid;
static atomic_bool client_connected = false;
static atomic_flag sent = ATOMIC_FLAG_INIT;

/* Runs when the library is loaded, before the program's main(). */
__attribute__((constructor)) static void read_settings(void)
{
    const char *when = getenv("LAB_STOP_BEFORE");

    server_pid = getpid();
    if (when != NULL && strcmp(when, "wait") == 0)
        stop_when = BEFORE_WAIT;
    else if (when != NULL && strcmp(when, "idle") == 0)
        stop_when = WHEN_IDLE;
}

static void stop_once(void)
{
    if (!atomic_flag_test_and_set(&sent))
        kill(server_pid, SIGTERM);
}

/* Called before every wait: accept, poll, select, epoll_wait... */
static void before_wait(void)
{
    if (stop_when == BEFORE_WAIT || (stop_when == WHEN_IDLE && client_connected))
        stop_once();
}

/* Called before every read: FD is a socket with no bytes to read, so a
 * blocking read would wait for the client. */
static void before_read(int fd)
{
    struct stat st;
    int waiting;

    if (stop_when == WHEN_IDLE && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
        ioctl(fd, FIONREAD, &waiting) == 0 && waiting == 0)
        stop_once();
}

/* After accept: a client is connected. */
static int accepted(int fd)
{
    if (fd >= 0)
        client_connected = true;
    return fd;
}

/* The next definition of NAME, as a function pointer. (ISO C has no cast
 * from void * to a function pointer; POSIX guarantees that the bits are
 * the same, so copy them.) Aborts if there is none: the program could not
 * have called it either. */
static void next(const char *name, void *fn, size_t size)
{
    void *sym = dlsym(RTLD_NEXT, name);

    if (sym == NULL)
        abort();
    memcpy(fn, &sym, size);
}

/* ---- waiting for a client ------------------------------------------- */

int accept(int fd, void *addr, void *len)
{
    int (*real)(int, void *, void *);
    next("accept", &real, sizeof real);
    before_wait();
    return accepted(real(fd, addr, len));
}

int accept4(int fd, void *addr, void *len, int flags)
{
    int (*real)(int, void *, void *, int);
    next("accept4", &real, sizeof real);
    before_wait();
    return accepted(real(fd, addr, len, flags));
}

int poll(void *fds, unsigned long nfds, int timeout)
{
    int (*real)(void *, unsigned long, int);
    next("poll", &real, sizeof real);
    before_wait();
    return real(fds, nfds, timeout);
}

int ppoll(void *fds, unsigned long nfds, const void *timeout,
          const void *mask)
{
    int (*real)(void *, unsigned long, const void *, const void *);
    next("ppoll", &real, sizeof real);
    before_wait();
    return real(fds, nfds, timeout, mask);
}

int select(int nfds, fd_set *restrict rd, fd_set *restrict wr,
           fd_set *restrict ex, struct timeval *restrict timeout)
{
    int (*real)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    next("select", &real, sizeof real);
    before_wait();
    return real(nfds, rd, wr, ex, timeout);
}

int pselect(int nfds, fd_set *restrict rd, fd_set *restrict wr,
            fd_set *restrict ex, const struct timespec *restrict timeout,
            const sigset_t *restrict mask)
{
    int (*real)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
                const sigset_t *);
    next("pselect", &real, sizeof real);
    before_wait();
    return real(nfds, rd, wr, ex, timeout, mask);
}

int epoll_wait(int epfd, void *events, int max, int timeout)
{
    int (*real)(int, void *, int, int);
    next("epoll_wait", &real, sizeof real);
    before_wait();
    return real(epfd, events, max, timeout);
}

int epoll_pwait(int epfd, void *events, int max, int timeout,
                const void *mask)
{
    int (*real)(int, void *, int, int, const void *);
    next("epoll_pwait", &real, sizeof real);
    before_wait();
    return real(epfd, events, max, timeout, mask);
}

/* ---- waiting for a client's bytes ------------------------------------- */

ssize_t read(int fd, void *buf, size_t len)
{
    ssize_t (*real)(int, void *, size_t);
    next("read", &real, sizeof real);
    before_read(fd);
    return real(fd, buf, len);
}

ssize_t readv(int fd, const void *iov, int count)
{
    ssize_t (*real)(int, const void *, int);
    next("readv", &real, sizeof real);
    before_read(fd);
    return real(fd, iov, count);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t (*real)(int, void *, size_t, int);
    next("recv", &real, sizeof real);
    before_read(fd);
    return real(fd, buf, len, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, void *addr,
                 void *addr_len)
{
    ssize_t (*real)(int, void *, size_t, int, void *, void *);
    next("recvfrom", &real, sizeof real);
    before_read(fd);
    return real(fd, buf, len, flags, addr, addr_len);
}

ssize_t recvmsg(int fd, void *msg, int flags)
{
    ssize_t (*real)(int, void *, int);
    next("recvmsg", &real, sizeof real);
    before_read(fd);
    return real(fd, msg, flags);
}
