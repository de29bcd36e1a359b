# The socket lab's machine: Debian 12 with every tool the lessons and tests
# use. It holds only the tools: your clone of the lab is mounted at /lab, so
# what you build and edit stays on your own disk.
#
#   docker build -t socket-lab .
#   docker run --rm -it --name lab --hostname lab \
#       --cap-add=SYS_PTRACE --cap-add=NET_RAW \
#       --security-opt seccomp=unconfined -v "$PWD":/lab socket-lab
#
# (Podman: the same two commands with podman instead of docker.) The run
# flags give what the lessons need: SYS_PTRACE lets strace and gdb attach to
# a running server (-p PID); NET_RAW lets tcpdump open its raw socket (Podman
# leaves it out by default: "socket: Operation not permitted");
# seccomp=unconfined lets gdb turn off address randomisation, as it does for
# a program it starts. A second terminal in the same machine:
#   docker exec -it lab bash
FROM debian:12

# The same packages as the install line in README.md ("What you need"):
# tests/fresh-machine checks that the two lists agree.
RUN apt-get update \
    && apt-get install -y build-essential clang bats iproute2 procps strace curl tcpdump lsof valgrind gdb tmux git man-db manpages-dev \
    && rm -rf /var/lib/apt/lists/*

# The lab runs as root here: nothing in it needs another user, and the files
# you mount keep working whoever owns them on your disk. git would refuse a
# folder that another user owns; /lab is yours.
RUN git config --system --add safe.directory /lab
WORKDIR /lab
CMD ["bash", "-l"]
