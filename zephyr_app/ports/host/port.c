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
 * - Link 1 (the mesh link) is a unix stream socket the fabric listens on, given as
 *   `--link1 unix:/path/to/socket` on the command line (read from /proc/self/cmdline, so the
 *   generated main() needs no argv) or as the environment variable PEMESH_LINK1=unix:/path
 *   (the command line wins). The PE connects at start-up, retrying for up to 10 s while the
 *   fabric comes up, and announces "pemesh: link1 on unix:/path". Without either, link 1 is
 *   absent. If the fabric closes the socket, link 1 is gone (reads return nothing, writes
 *   fail with -EIO). Link 2 is not implemented: writes fail with -ENODEV.
 * - Cycles are CLOCK_MONOTONIC nanoseconds, not CPU cycles.
 * - SIGTERM/SIGINT end the process cleanly (exit status 0) from pemesh_port_idle().
 */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
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
	int link1;   /* unix socket to the fabric, or -1 */
	volatile sig_atomic_t stop;
} pemesh_host = {.master = -1, .slave = -1, .link1 = -1, .stop = 0};

/** Seconds the PE keeps trying to connect link 1 while the fabric starts. */
#define PEMESH_HOST_LINK1_WAIT_S 10

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
		if (pemesh_host.link1 >= 0) {
			close(pemesh_host.link1);
		}
		exit(0);
	}
}

/* The link-1 spec: "--link1 X" / "--link1=X" from /proc/self/cmdline, else $PEMESH_LINK1. */
static const char *pemesh_host_link1_spec(void)
{
	static char cmdline[4096];
	const char *env = getenv("PEMESH_LINK1");
	ssize_t n = 0;
	int fd = open("/proc/self/cmdline", O_RDONLY);

	if (fd >= 0) {
		n = read(fd, cmdline, sizeof(cmdline) - 1u);
		close(fd);
	}
	if (n > 0) {
		cmdline[n] = '\0';
		for (ssize_t i = 0; i < n; i += (ssize_t)strlen(&cmdline[i]) + 1) {
			const char *arg = &cmdline[i];

			if (strncmp(arg, "--link1=", 8) == 0) {
				return arg + 8;
			}
			if (strcmp(arg, "--link1") == 0 && i + 8 < n) {
				return arg + 8;
			}
		}
	}
	return (env != NULL && env[0] != '\0') ? env : NULL;
}

/* Connect link 1 to the fabric's unix socket ("unix:/path"); 0 or -errno. */
static int pemesh_host_link1_connect(const char *spec)
{
	struct sockaddr_un addr;
	const char *path;

	if (strncmp(spec, "unix:", 5) != 0) {
		fprintf(stderr, "pemesh: link1 '%s' is not 'unix:/path'\n", spec);
		return -EINVAL;
	}
	path = spec + 5;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	if (strlen(path) == 0u || strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "pemesh: link1 socket path '%s' is empty or too long\n", path);
		return -EINVAL;
	}
	strcpy(addr.sun_path, path);
	for (int tries = 0; tries < PEMESH_HOST_LINK1_WAIT_S * 10; tries++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			return -errno;
		}
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
			if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
				int err = errno;

				close(fd);
				return -err;
			}
			pemesh_host.link1 = fd;
			printf("pemesh: link1 on %s\n", spec);
			fflush(stdout);
			return 0;
		}
		close(fd);
		if (errno != ENOENT && errno != ECONNREFUSED && errno != EAGAIN) {
			break;
		}
		pemesh_host_exit_if_stopped();
		(void)poll(NULL, 0, 100);
	}
	fprintf(stderr, "pemesh: cannot connect link1 to %s: %s\n", path, strerror(errno));
	return -EIO;
}

static void pemesh_host_link1_down(void)
{
	if (pemesh_host.link1 >= 0) {
		close(pemesh_host.link1);
		pemesh_host.link1 = -1;
		fprintf(stderr, "pemesh: link1 closed by the fabric\n");
	}
}

/* The file descriptor of a link, or -1. */
static int pemesh_host_fd(uint8_t link)
{
	if (link == PEMESH_LINK_HOST) {
		return pemesh_host.master;
	}
	if (link == PEMESH_LINK_MESH) {
		return pemesh_host.link1;
	}
	return -1;
}

int pemesh_port_init(void)
{
	const char *link1;
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
	link1 = pemesh_host_link1_spec();
	return link1 != NULL ? pemesh_host_link1_connect(link1) : 0;
}

int pemesh_link_write(uint8_t link, const uint8_t *buf, size_t len)
{
	int fd = pemesh_host_fd(link);

	if (fd < 0) {
		return link == PEMESH_LINK_MESH ? -EIO : -ENODEV;
	}
	while (len > 0u) {
		ssize_t n = link == PEMESH_LINK_MESH ? send(fd, buf, len, MSG_NOSIGNAL)
						     : write(fd, buf, len);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			if (link == PEMESH_LINK_MESH) {
				pemesh_host_link1_down();
			}
			return -EIO;
		}
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};

			(void)poll(&p, 1, 100);
		}
		pemesh_host_exit_if_stopped();
	}
	return 0;
}

size_t pemesh_link_read(uint8_t link, uint8_t *buf, size_t max)
{
	int fd = pemesh_host_fd(link);
	ssize_t n;

	if (fd < 0) {
		return 0u;
	}
	n = read(fd, buf, max);
	if (n == 0 && link == PEMESH_LINK_MESH) {
		pemesh_host_link1_down(); /* end of stream: the fabric went away */
	}
	return n > 0 ? (size_t)n : 0u;
}

void pemesh_port_idle(void)
{
	struct pollfd p[2] = {
		{.fd = pemesh_host.master, .events = POLLIN},
		{.fd = pemesh_host.link1, .events = POLLIN}, /* fd -1 is ignored by poll */
	};

	pemesh_host_exit_if_stopped();
	/* a signal interrupts poll (EINTR); the timeout bounds the wait in any case */
	(void)poll(p, 2, 200);
	pemesh_host_exit_if_stopped();
}

uint64_t pemesh_cycles(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t pemesh_cycles_per_second(void)
{
	return 1000000000u; /* pemesh_cycles() counts nanoseconds */
}
