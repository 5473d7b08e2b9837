/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * pemesh port for a PE as a Linux process.
 *
 * - Link 0 (the host link) is a pseudo-terminal the process opens itself
 *   (posix_openpt/grantpt/unlockpt, raw mode). Its slave path is announced on stdout as one
 *   line "pemesh: link0 on /dev/pts/N" (mirroring QEMU's "char device redirected to
 *   /dev/pts/N"), then stdout is flushed. The process keeps the slave open itself so the
 *   master never sees a hang-up while no client is connected. The kernel's pty buffer is
 *   the receive buffer; rx_window in PONG still comes from CONFIG_PEMESH_RX_BUFFER_SIZE.
 * - Links 1 and 2 (mesh links) are not implemented yet: writes fail with -ENODEV, reads
 *   return nothing.
 * - Cycles are CLOCK_MONOTONIC nanoseconds, not CPU cycles.
 * - SIGTERM/SIGINT end the process cleanly (exit status 0) from pemesh_port_idle().
 */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <pemesh/port.h>

/** All state of this port. */
static struct {
	int master;  /* pty master (our end of link 0) */
	int slave;   /* pty slave, held open so the master never hangs up */
	volatile sig_atomic_t stop;
} pemesh_host = {.master = -1, .slave = -1, .stop = 0};

static void pemesh_host_on_signal(int sig)
{
	(void)sig;
	pemesh_host.stop = 1;
}

static void pemesh_host_exit_if_stopped(void)
{
	if (pemesh_host.stop) {
		if (pemesh_host.slave >= 0) {
			close(pemesh_host.slave);
		}
		if (pemesh_host.master >= 0) {
			close(pemesh_host.master);
		}
		exit(0);
	}
}

int pemesh_port_init(void)
{
	struct sigaction sa;
	struct termios tio;
	const char *name;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = pemesh_host_on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
		return -errno;
	}
	signal(SIGPIPE, SIG_IGN);

	fd = posix_openpt(O_RDWR | O_NOCTTY);
	if (fd < 0) {
		return -errno;
	}
	if (grantpt(fd) != 0 || unlockpt(fd) != 0 || (name = ptsname(fd)) == NULL) {
		int err = errno;

		close(fd);
		return -err;
	}
	pemesh_host.slave = open(name, O_RDWR | O_NOCTTY);
	if (pemesh_host.slave < 0 || tcgetattr(pemesh_host.slave, &tio) != 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	cfmakeraw(&tio);
	if (tcsetattr(pemesh_host.slave, TCSANOW, &tio) != 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	pemesh_host.master = fd;
	printf("pemesh: link0 on %s\n", name);
	fflush(stdout);
	return 0;
}

int pemesh_link_write(uint8_t link, const uint8_t *buf, size_t len)
{
	if (link != PEMESH_LINK_HOST || pemesh_host.master < 0) {
		return -ENODEV;
	}
	while (len > 0u) {
		ssize_t n = write(pemesh_host.master, buf, len);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return -EIO;
		}
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = pemesh_host.master, .events = POLLOUT};

			(void)poll(&p, 1, 100);
		}
		pemesh_host_exit_if_stopped();
	}
	return 0;
}

size_t pemesh_link_read(uint8_t link, uint8_t *buf, size_t max)
{
	ssize_t n;

	if (link != PEMESH_LINK_HOST || pemesh_host.master < 0) {
		return 0u;
	}
	n = read(pemesh_host.master, buf, max);
	return n > 0 ? (size_t)n : 0u;
}

void pemesh_port_idle(void)
{
	struct pollfd p = {.fd = pemesh_host.master, .events = POLLIN};

	pemesh_host_exit_if_stopped();
	/* a signal interrupts poll (EINTR); the timeout bounds the wait in any case */
	(void)poll(&p, 1, 200);
	pemesh_host_exit_if_stopped();
}

uint64_t pemesh_cycles(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
