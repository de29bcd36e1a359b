/*
 * simple_client.c - chapter 03: the NAIVE client. Read it first, then see
 * why client.c is not this simple.
 *
 * socket() -> connect() -> write all of stdin -> shutdown(SHUT_WR) -> read
 * the reply until the server closes -> close(). Blocking calls, one after
 * the other. Right for a short input; a large one deadlocks (README: "The
 * naive client deadlocks"), because it never reads while it writes.
 */
#include "lab.h"

#include <stdio.h>
#include <unistd.h>

#define BUF_SIZE 65536

static const char usage[] = "usage: simple_client [-b ADDR] [-p PORT]\n";

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT;
    char buf[BUF_SIZE];
    ssize_t n;
    int opt, sock_fd;

    set_program_name(argv[0]);
    keep_std_fds_open(); /* no socket on descriptor 0, 1 or 2 */
    while ((opt = getopt(argc, argv, ":b:p:")) != -1) {
        if (opt == 'b' && is_valid_addr(optarg))
            addr = optarg;
        else if (opt == 'p' && is_valid_port(optarg))
            port = optarg;
        else
            usage_error(usage, "bad option or value");
    }
    if (ignore_sigpipe() == -1) /* a write to a reset connection: EPIPE */
        die_errno("sigaction SIGPIPE");
    if (check_stdout() == -1) /* stdout closed at start: say so */
        return 1;

    sock_fd = open_connection(addr, port); /* socket() + connect() */
    if (sock_fd == -1)
        return 1;

    /* 1. Send all of standard input. write_all() blocks while the socket's
     *    send buffer is full, and nobody reads the echo meanwhile. */
    while ((n = read_retry(STDIN_FILENO, buf, sizeof buf)) > 0)
        if (write_all(sock_fd, buf, (size_t)n) == -1)
            die_errno("write to server");
    if (n == -1)
        die_errno("read stdin");

    /* 2. Half-close: "no more data from me"; the reply can still come. */
    if (shutdown(sock_fd, SHUT_WR) == -1)
        die_errno("shutdown");

    /* 3. Copy the reply to stdout until the server closes (read 0). */
    while ((n = read_retry(sock_fd, buf, sizeof buf)) > 0)
        if (write_all(STDOUT_FILENO, buf, (size_t)n) == -1)
            die_errno("write stdout");
    if (n == -1)
        die_errno("read from server");

    if (close(sock_fd) == -1)
        die_errno("close");
    return 0;
}
