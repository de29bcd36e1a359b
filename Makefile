# The socket lab's build. Every C file in a chapter folder (and in tools/ and
# tests/) is one program of the same name, linked with common/liblab.a.
#
#   make chapter N         build chapter N (1-7 or 01-07) and say how to run it
#   make                   build every chapter
#   make test [N=3]        run the tests (all, or chapter 3's)
#   make check N=3         grade chapter 3's exercises against this tree
#   make clean             remove what the build made
#   make CC=clang ...      use clang instead of cc
#   make SAN=address,undefined test    build with sanitizers and run the tests
#   make SAN=thread test N=5           ThreadSanitizer on the threaded server

CC      ?= cc
CFLAGS  ?= -O2 -g
# C11 plus POSIX.1-2008, and warnings that stop the build.
LAB_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L \
              -Wall -Wextra -Wpedantic -Werror -Icommon -pthread
LDFLAGS ?=
LDLIBS  := -pthread

SAN ?=
ifneq ($(SAN),)
SAN_FLAGS := -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

ALL_CFLAGS  := $(LAB_CFLAGS) $(CFLAGS) $(SAN_FLAGS)
ALL_LDFLAGS := $(LDFLAGS) $(SAN_FLAGS)

CHAPTERS := $(sort $(wildcard 0[1-7]-*))
# tests/stop_shim.c is no program but a library the tests preload.
SHIM     := tests/stop_shim.so
PROGRAMS := $(patsubst %.c,%,$(filter-out $(SHIM:.so=.c),\
              $(wildcard 0[1-7]-*/*.c tools/*.c tests/*.c)))
LIB      := common/liblab.a
LIB_OBJS := $(patsubst %.c,%.o,$(wildcard common/*.c))

.PHONY: all chapter test check bench clean FORCE
all: $(PROGRAMS) $(SHIM)

# Rebuild everything when the compiler or flags change (CC=clang, SAN=...),
# so that a sanitizer run never links objects built without it.
BUILD_ID := $(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)
.build-flags: FORCE
	@echo '$(BUILD_ID)' | cmp -s - $@ || echo '$(BUILD_ID)' > $@

common/%.o: common/%.c common/lab.h .build-flags
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJS)
	$(AR) rcs $@ $^

$(PROGRAMS): %: %.c $(LIB) common/lab.h .build-flags
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(ALL_LDFLAGS) $(LDLIBS)

# A shared object for LD_PRELOAD, built without sanitizers: their runtime
# must be the first library loaded, and the tests preload this one.
$(SHIM): %.so: %.c .build-flags
	$(CC) $(LAB_CFLAGS) $(CFLAGS) -shared -fPIC -o $@ $< $(LDFLAGS)

# ---- make chapter N ---------------------------------------------------------
# The chapter number is another goal ("make chapter 3", or "make clean
# chapter 3"): the first goal that is not one of the Makefile's own. It is
# checked while the Makefile is read, so a bad one gives one line of
# explanation.
ifneq ($(filter chapter,$(MAKECMDGOALS)),)
CHAPTER_ARG := $(firstword $(filter-out all chapter test check bench clean,\
                 $(MAKECMDGOALS)))
ifeq ($(CHAPTER_ARG),)
$(error usage: make chapter N, where N is 1-7)
endif
CHAPTER_NUM := $(patsubst 0%,%,$(CHAPTER_ARG))
ifeq ($(filter $(CHAPTER_NUM),1 2 3 4 5 6 7),)
$(error there is no chapter '$(CHAPTER_ARG)': the chapters are 1-7 (or 01-07))
endif
CHAPTER_DIR   := $(wildcard 0$(CHAPTER_NUM)-*)
CHAPTER_PROGS := $(filter $(CHAPTER_DIR)/%,$(PROGRAMS))
ifeq ($(CHAPTER_PROGS),)
$(error chapter $(CHAPTER_NUM) ($(CHAPTER_DIR)) is not written yet: read $(CHAPTER_DIR)/README.md)
endif
$(CHAPTER_ARG): ; @:
endif

# How to run each chapter, printed after it is built.
RUN_1 := ./01-socket/sockets
RUN_2 := ./02-bind-listen/listener -p 0      (then, in another terminal: ss -ltn)
RUN_3 := ./03-accept/server -p 0      (then: ./03-accept/client -p PORT)
RUN_4 := ./04-fork-server/server -p 0      (then: ./03-accept/client -p PORT)
RUN_5 := ./05-thread-server/server -p 0      (or -t 4 for a pool of 4 threads)
RUN_6 := ./06-select-server/server -p 0      (then: ./03-accept/client -p PORT)
RUN_7 := ./07-epoll-server/server -p 0      (-e for edge-triggered)

# The lessons of 03-07 also run tests/peer (a client that misbehaves on
# purpose) and tools/loadgen; 02 and 04-07 run chapter 03's client, and 02
# its server too.
chapter: $(CHAPTER_PROGS) \
         $(if $(filter 3 4 5 6 7,$(CHAPTER_NUM)),tests/peer tools/loadgen) \
         $(if $(filter 2 4 5 6 7,$(CHAPTER_NUM)),03-accept/client) \
         $(if $(filter 2,$(CHAPTER_NUM)),03-accept/server)
	@echo
	@echo "built $(CHAPTER_DIR): $(notdir $(CHAPTER_PROGS))"
	@echo "run it:  $(RUN_$(CHAPTER_NUM))"
	@echo "read it: $(CHAPTER_DIR)/README.md"

# ---- tests and benchmark ----------------------------------------------------
N ?=
test: all
	@tests/run $(N)

# The graded exercises (each chapter's check/ folder), not part of make
# test: one line per exercise, "passed" or "not yet" and why.
check: all
	@tests/check $(N)

bench: all
	@bench/run $(BENCH_ARGS)

clean:
	rm -f $(PROGRAMS) $(SHIM) $(LIB) $(LIB_OBJS) .build-flags
	rm -rf bench/results
