/*
 * sockets.c - chapter 01: a socket is a file descriptor.
 *
 * It lists the files this process starts with (0, 1, 2), then asks the
 * kernel for sockets of several domains and types and prints what each
 * socket() call returned: a small number, the same kind as 0, 1 and 2,
 * whose entry in /proc/self/fd reads "socket:[INODE]". Then it makes a few
 * calls that cannot work and prints the error the kernel gives (errno).
 * With -w it waits, sockets open, so you can look at them from outside:
 * ls -l /proc/PID/fd.
 */
#include "lab.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LINK_MAX_LEN 256     /* "socket:[12345]", "/dev/pts/0": short */
#define NO_SUCH_DOMAIN 12345 /* no address family has this number */

static const char usage[] =
    "usage: sockets [-w] [-h]\n"
    "Creates sockets of several domains and types, shows that each one is a\n"
    "file descriptor, and shows the errors of combinations that cannot work.\n"
    "  -w  wait (sockets open) until Ctrl-C, to look at /proc/PID/fd\n"
    "  -h  show this help\n";

/* One socket() call: its three arguments, the call as text, and what the
 * socket is for. */
struct attempt {
    int domain, type, protocol;
    const char *text, *what;
};

/* Sockets that work. Protocol 0 lets the kernel pick the usual protocol
 * of the domain and type: TCP for a stream, UDP for datagrams. Naming it
 * (IPPROTO_TCP is 6, IPPROTO_UDP is 17) gives the same socket. */
static const struct attempt internet[] = {
    {AF_INET, SOCK_STREAM, 0, "socket(AF_INET, SOCK_STREAM, 0)",
     "TCP over IPv4"},
    {AF_INET, SOCK_DGRAM, 0, "socket(AF_INET, SOCK_DGRAM, 0)", "UDP over IPv4"},
    {AF_INET6, SOCK_STREAM, 0, "socket(AF_INET6, SOCK_STREAM, 0)",
     "TCP over IPv6"},
    {AF_INET6, SOCK_DGRAM, 0, "socket(AF_INET6, SOCK_DGRAM, 0)",
     "UDP over IPv6"},
    {AF_INET, SOCK_STREAM, IPPROTO_TCP,
     "socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)", "TCP (6)"},
    {AF_INET, SOCK_DGRAM, IPPROTO_UDP,
     "socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP)", "UDP (17)"},
};
static const struct attempt local[] = {
    {AF_UNIX, SOCK_STREAM, 0, "socket(AF_UNIX, SOCK_STREAM, 0)",
     "a byte stream"},
    {AF_UNIX, SOCK_DGRAM, 0, "socket(AF_UNIX, SOCK_DGRAM, 0)", "datagrams"},
};
/* On a raw socket the program reads whole IP packets and writes its own
 * protocol headers (ping's ICMP echo, for instance). It can forge traffic,
 * so it needs the CAP_NET_RAW privilege: root has it, other users do not. */
static const struct attempt raw = {AF_INET, SOCK_RAW, IPPROTO_ICMP,
                                   "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
                                   "raw IPv4, ICMP"};
/* Combinations that cannot work. */
static const struct attempt nonsense[] = {
    {AF_INET, SOCK_STREAM, IPPROTO_UDP,
     "socket(AF_INET, SOCK_STREAM, IPPROTO_UDP)", "a stream is not UDP"},
    {AF_INET, SOCK_DGRAM, IPPROTO_TCP,
     "socket(AF_INET, SOCK_DGRAM, IPPROTO_TCP)", "datagrams are not TCP"},
    {AF_UNIX, SOCK_STREAM, IPPROTO_TCP,
     "socket(AF_UNIX, SOCK_STREAM, IPPROTO_TCP)",
     "TCP is an Internet protocol"},
    {NO_SUCH_DOMAIN, SOCK_STREAM, 0, "socket(12345, SOCK_STREAM, 0)",
     "no domain has that number"},
};

#define COUNT(array) (sizeof(array) / sizeof(array)[0])

/* The sockets we opened, to close them at the end: at most one per call. */
static int open_fds[COUNT(internet) + COUNT(local) + 1 + COUNT(nonsense)];
static size_t open_count;

/* What /proc/self/fd/FD points to: a path for a file, "socket:[INODE]" for
 * a socket, "pipe:[INODE]" for a pipe. readlink() does not end the text
 * with '\0', so we do. */
static const char *fd_link(int fd, char *buf, size_t size)
{
    char path[64];
    ssize_t len;

    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    len = readlink(path, buf, size - 1);
    if (len == -1) {
        snprintf(buf, size, "(readlink: %s)", strerror(errno));
        return buf;
    }
    buf[len] = '\0';
    return buf;
}

/* Print the descriptors this process already holds: normally 0, 1 and 2,
 * which the shell opened before our main() ran. Listing /proc/self/fd opens
 * one more descriptor (the directory itself), which we skip. */
static void list_open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *entry;
    char link[LINK_MAX_LEN];

    if (dir == NULL)
        die_errno("opendir /proc/self/fd");
    while ((entry = readdir(dir)) != NULL) {
        long fd;
        const char *what = "inherited from the parent process";

        if (!parse_number(entry->d_name, 0, 1 << 30, &fd) || fd == dirfd(dir))
            continue; /* ".", "..", or the directory we are reading */
        if (fd == STDIN_FILENO)
            what = "standard input";
        else if (fd == STDOUT_FILENO)
            what = "standard output";
        else if (fd == STDERR_FILENO)
            what = "standard error";
        printf("  fd %-3ld %-20s %s\n", fd, fd_link((int)fd, link, sizeof link),
               what);
    }
    if (closedir(dir) == -1)
        die_errno("closedir /proc/self/fd");
}

/* Make one socket() call and print what it returned: a descriptor and its
 * /proc/self/fd entry, or -1 and errno. A descriptor is kept open (and
 * remembered, to close at the end) so that the next call gets a new one.
 * Returns the descriptor, or -1 with errno as socket() left it. */
static int try_socket(const struct attempt *a)
{
    char link[LINK_MAX_LEN];
    int fd = socket(a->domain, a->type, a->protocol);

    if (fd == -1) {
        int err = errno; /* before printf() can change it */

        printf("  %-41s = -1  errno %s\n", a->text, errno_name(err));
        printf("      \"%s\": %s\n", strerror(err), a->what);
        errno = err;
        return -1;
    }
    printf("  %-41s = %-3d %-16s %s\n", a->text, fd,
           fd_link(fd, link, sizeof link), a->what);
    open_fds[open_count++] = fd;
    return fd;
}

int main(int argc, char **argv)
{
    bool wait_for_signal = false;
    int opt, fd;

    set_program_name(argv[0]);
    keep_std_fds_open(); /* before any socket can take descriptor 0, 1, 2 */
    while ((opt = getopt(argc, argv, ":wh")) != -1) {
        switch (opt) {
        case 'w':
            wait_for_signal = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            usage_error(usage, "unknown option -%c", optopt);
        }
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    /* For -w: Ctrl-C (SIGINT) or kill (SIGTERM) ends the wait. How signals
     * work is chapter 04's topic: skip this call for now. */
    if (catch_stop_signals() == -1)
        die_errno("sigaction");

    printf("process %ld starts with these open files (/proc/%ld/fd):\n",
           (long)getpid(), (long)getpid());
    list_open_fds();

    printf("\nInternet sockets (IPv4: AF_INET, IPv6: AF_INET6):\n");
    for (size_t i = 0; i < COUNT(internet); i++)
        try_socket(&internet[i]);

    printf("\nLocal sockets, between processes on this machine (AF_UNIX):\n");
    for (size_t i = 0; i < COUNT(local); i++)
        try_socket(&local[i]);

    printf("\nA raw socket (the program writes the ICMP packets itself, as "
           "ping does):\n");
    if (try_socket(&raw) != -1)
        printf("  allowed: this process has CAP_NET_RAW (root has it)\n");
    else if (errno == EPERM)
        printf("  refused: a raw socket needs CAP_NET_RAW (root has it: try "
               "sudo)\n");

    printf(
        "\nCombinations that cannot work: socket() returns -1, sets errno:\n");
    for (size_t i = 0; i < COUNT(nonsense); i++)
        if (try_socket(&nonsense[i]) != -1)
            printf("  (unexpected: this kernel accepted it)\n");

    /* The kernel gives out the lowest free number: close the first socket,
     * and the next one gets its number. */
    if (open_count > 0) {
        int freed = open_fds[0];
        char link[LINK_MAX_LEN];

        if (close(freed) == -1)
            die_errno("close %d", freed);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd == -1)
            die_errno("socket AF_INET SOCK_STREAM");
        open_fds[0] = fd;
        printf("\nThe lowest free number is used again:\n");
        printf("  close(%d)\n", freed);
        printf("  %-41s = %-3d %-16s %s\n", "socket(AF_INET, SOCK_STREAM, 0)",
               fd, fd_link(fd, link, sizeof link), "a new socket");
    }

    if (wait_for_signal) {
        printf("\nwaiting, sockets open: in another terminal, run\n"
               "  ls -l /proc/%ld/fd\n"
               "then press Ctrl-C here to close them and exit.\n",
               (long)getpid());
        /* Send what printf() has saved up (fflush), and check that it
         * could be written: if stdout is full or closed, say so now rather
         * than wait for a Ctrl-C that nobody will send. */
        if (check_stdout() == -1)
            return 1;
        wait_for_stop_signal(); /* sigsuspend(): chapter 04, skip for now */
    }

    for (size_t i = 0; i < open_count; i++)
        if (close(open_fds[i]) == -1)
            die_errno("close %d", open_fds[i]);
    printf("\nclosed %zu sockets.\n", open_count);
    /* Flush stdout and check it: printf() alone never reports that its
     * text could not be written (a full disk: ENOSPC; closed: EBADF). */
    if (check_stdout() == -1)
        return 1;
    return 0;
}
