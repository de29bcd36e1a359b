/* address.c - getaddrinfo() for IPv4 and IPv6, and printing addresses. */
#include "lab.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

char *format_addr(const struct sockaddr *sa, socklen_t len, char *buf,
                  size_t size)
{
    char host[INET6_ADDRSTRLEN];

    /* The port is stored in network byte order (big-endian): ntohs(). */
    if (sa->sa_family == AF_INET &&
        len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host) == NULL)
            snprintf(host, sizeof host, "?");
        snprintf(buf, size, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6 &&
               len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) == NULL)
            snprintf(host, sizeof host, "?");
        snprintf(buf, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(buf, size, "(address family %d)", sa->sa_family);
    }
    return buf;
}

/* "127.0.0.1:8080" or "[::1]:8080" from the strings the user typed. */
static void join_host_port(const char *addr, const char *port, char *buf,
                           size_t size)
{
    if (strchr(addr, ':') != NULL)
        snprintf(buf, size, "[%s]:%s", addr, port);
    else
        snprintf(buf, size, "%s:%s", addr, port);
}

/* getaddrinfo() reports its errors through its return value, not errno. */
static struct addrinfo *resolve(const char *addr, const char *port, int flags)
{
    struct addrinfo hints, *list;
    char where[ADDR_TEXT_MAX];
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;     /* IPv4 or IPv6, whichever ADDR is */
    hints.ai_socktype = SOCK_STREAM; /* TCP */
    hints.ai_flags = flags | AI_NUMERICHOST | AI_NUMERICSERV; /* no DNS */
    rc = getaddrinfo(addr, port, &hints, &list);
    if (rc != 0) {
        join_host_port(addr, port, where, sizeof where);
        warn_msg("getaddrinfo %s: %s", where, gai_strerror(rc));
        return NULL;
    }
    return list;
}

int open_listener(const char *addr, const char *port, int backlog)
{
    struct addrinfo *list, *ai;
    char where[ADDR_TEXT_MAX];
    int fd = -1, one = 1;

    list = resolve(addr, port, AI_PASSIVE);
    if (list == NULL)
        return -1;
    join_host_port(addr, port, where, sizeof where);
    /* A numeric address gives one answer; the loop is the habit that also
     * works for a name with several addresses. */
    for (ai = list; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd == -1) {
            warn_errno("socket %s", where);
            continue;
        }
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1)
            warn_errno("setsockopt SO_REUSEADDR %s", where);
        else if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1)
            warn_errno("bind %s", where);
        else if (listen(fd, backlog) == -1)
            warn_errno("listen %s", where);
        else
            break; /* success */
        if (close(fd) == -1)
            warn_errno("close %s", where);
        fd = -1;
    }
    freeaddrinfo(list);
    return fd;
}

int open_connection(const char *addr, const char *port)
{
    struct addrinfo *list, *ai;
    char where[ADDR_TEXT_MAX];
    int fd = -1;

    list = resolve(addr, port, 0);
    if (list == NULL)
        return -1;
    join_host_port(addr, port, where, sizeof where);
    for (ai = list; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd == -1) {
            warn_errno("socket %s", where);
            continue;
        }
        /* connect() interrupted by a signal goes on in the background; we
         * catch no signal in the client, so EINTR cannot happen here. */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        warn_errno("connect %s", where);
        if (close(fd) == -1)
            warn_errno("close %s", where);
        fd = -1;
    }
    freeaddrinfo(list);
    return fd;
}

int announce_listening(int listen_fd)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    char text[ADDR_TEXT_MAX], line[ADDR_TEXT_MAX + 16];
    int n;

    /* With port 0 the kernel chose the port at bind(); ask which. */
    if (getsockname(listen_fd, (struct sockaddr *)&local, &len) == -1) {
        warn_errno("getsockname");
        return -1;
    }
    /* One write() straight to descriptor 1, checked: through a line-buffered
     * printf() a failed write would only set stdout's error flag. */
    n = snprintf(line, sizeof line, "listening on %s\n",
                 format_addr((struct sockaddr *)&local, len, text, sizeof text));
    return write_stdout(line, (size_t)n);
}
