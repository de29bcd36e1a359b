/* log.c - standard streams a server can trust, and log lines that never
 * block. */
#include "lab.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool stdout_was_closed;
static atomic_ulong lines_dropped;

void keep_std_fds_open(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue; /* open */
        /* The lowest free number is FD itself: 0..FD-1 are open by now. */
        if (open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd) {
            warn_errno("open /dev/null as descriptor %d", fd);
            exit(1);
        }
        if (fd == STDOUT_FILENO)
            stdout_was_closed = true; /* our output goes nowhere: say so */
    }
}

int check_stdout(void)
{
    if (stdout_was_closed) {
        errno = EBADF;
        warn_errno("write stdout");
        return -1;
    }
    errno = 0; /* so that an errno below is this call's */
    /* A line-buffered printf() did its own write(); a failure there only
     * sets the error flag, so fflush() alone may return 0: ask ferror(). */
    if (fflush(stdout) == EOF || ferror(stdout)) {
        if (errno == 0)
            errno = EIO;
        warn_errno("write stdout");
        return -1;
    }
    return 0;
}

int write_stdout(const char *text, size_t len)
{
    if (stdout_was_closed)
        errno = EBADF;
    else if (write_all(STDOUT_FILENO, text, len) == 0)
        return 0;
    warn_errno("write stdout"); /* ENOSPC for >/dev/full, EPIPE, ... */
    return -1;
}

void write_log_line(int fd, const char *line, size_t len)
{
    static pthread_mutex_t writer = PTHREAD_MUTEX_INITIALIZER;
    struct pollfd pfd = {.fd = fd, .events = POLLOUT, .revents = 0};
    bool written;

    /* poll() with timeout 0 only asks: is there room now? A pipe with room
     * takes a line this short whole, without blocking. No room means nobody
     * is reading: drop the line rather than stop serving. The lock keeps
     * another thread from taking that room between our poll() and write(). */
    if (pthread_mutex_lock(&writer) != 0) {
        atomic_fetch_add(&lines_dropped, 1);
        return;
    }
    written = poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT) &&
              write(fd, line, len) == (ssize_t)len;
    if (pthread_mutex_unlock(&writer) != 0)
        abort(); /* we hold it: only a bug in this file can make this fail */
    if (!written)
        atomic_fetch_add(&lines_dropped, 1);
}

void log_line(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len > sizeof line - 2)
        len = (int)sizeof line - 2; /* cut a line that does not fit */
    line[len++] = '\n';
    write_log_line(STDOUT_FILENO, line, (size_t)len);
}

unsigned long log_lines_dropped(void)
{
    return atomic_load(&lines_dropped);
}
