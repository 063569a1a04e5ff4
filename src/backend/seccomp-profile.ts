/**
 * asp's own seccomp profile: Docker's default profile (moby profiles/seccomp/default.json, as shipped with Docker
 * 20.10) minus kernel surface that a test suite does not need. It is passed inline (`seccomp=<json>`) on every
 * sandbox, so the daemon's own default, which differs between Docker versions and engines, never decides it.
 *
 * Docker's capability-conditional rules are left out on purpose: no step holds a capability, and the runner's
 * (container-spec.ts) need none of those syscalls. In particular `open_by_handle_at`, which Docker allows with
 * CAP_DAC_READ_SEARCH, stays refused: it is the "shocker" container escape, and the runner holds that capability.
 */

/** Refused syscalls Docker's default would allow, each with the reason. ENOSYS makes libraries fall back quietly. */
export const DENIED_SYSCALLS: ReadonlyArray<{ names: string[]; errno: number; reason: string }> = [
  {
    names: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'],
    errno: 38, // ENOSYS: libuv, liburing users and runtimes treat io_uring as absent and use ordinary syscalls
    reason:
      'io_uring is the largest new kernel attack surface of recent years (many privilege escalations); ' +
      'Google disables it on ChromeOS, Android and its servers, and test suites only ever use it as an optional fast path',
  },
  {
    names: ['memfd_secret'],
    errno: 38,
    reason: "secret memory removes pages from the kernel's direct map; no test suite needs it and it is young kernel code",
  },
  {
    names: ['modify_ldt'],
    errno: 38,
    reason: 'Docker allows it on x86 for 16-bit segments (Wine, DOSEMU); no test suite needs them, and it has had ' + 'privilege escalations of its own (CVE-2015-5157, CVE-2017-17053)',
  },
  {
    names: ['remap_file_pages'],
    errno: 38,
    reason: 'deprecated since Linux 3.16 and emulated; only old exploits use it',
  },
];

/** Docker 20.10's unconditional allow list, less DENIED_SYSCALLS. */
// The list as Docker's profile has it, wrapped: one name a line would be 340 lines.
// prettier-ignore
const ALLOWED_SYSCALLS = [
  'accept', 'accept4', 'access', 'adjtimex', 'alarm', 'bind', 'brk', 'capget', 'capset', 'chdir', 'chmod', 'chown',
  'chown32', 'clock_adjtime', 'clock_adjtime64', 'clock_getres', 'clock_getres_time64', 'clock_gettime',
  'clock_gettime64', 'clock_nanosleep', 'clock_nanosleep_time64', 'close', 'close_range', 'connect',
  'copy_file_range', 'creat', 'dup', 'dup2', 'dup3', 'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old',
  'epoll_pwait', 'epoll_pwait2', 'epoll_wait', 'epoll_wait_old', 'eventfd', 'eventfd2', 'execve', 'execveat', 'exit',
  'exit_group', 'faccessat', 'faccessat2', 'fadvise64', 'fadvise64_64', 'fallocate', 'fanotify_mark', 'fchdir',
  'fchmod', 'fchmodat', 'fchown', 'fchown32', 'fchownat', 'fcntl', 'fcntl64', 'fdatasync', 'fgetxattr', 'flistxattr',
  'flock', 'fork', 'fremovexattr', 'fsetxattr', 'fstat', 'fstat64', 'fstatat64', 'fstatfs', 'fstatfs64', 'fsync',
  'ftruncate', 'ftruncate64', 'futex', 'futex_time64', 'futex_waitv', 'futimesat', 'getcpu', 'getcwd', 'getdents',
  'getdents64', 'getegid', 'getegid32', 'geteuid', 'geteuid32', 'getgid', 'getgid32', 'getgroups', 'getgroups32',
  'getitimer', 'getpeername', 'getpgid', 'getpgrp', 'getpid', 'getppid', 'getpriority', 'getrandom', 'getresgid',
  'getresgid32', 'getresuid', 'getresuid32', 'getrlimit', 'get_robust_list', 'getrusage', 'getsid', 'getsockname',
  'getsockopt', 'get_thread_area', 'gettid', 'gettimeofday', 'getuid', 'getuid32', 'getxattr', 'inotify_add_watch',
  'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel', 'ioctl', 'io_destroy', 'io_getevents',
  'io_pgetevents', 'io_pgetevents_time64', 'ioprio_get', 'ioprio_set', 'io_setup', 'io_submit', 'ipc', 'kill',
  'landlock_add_rule', 'landlock_create_ruleset', 'landlock_restrict_self', 'lchown', 'lchown32', 'lgetxattr',
  'link', 'linkat', 'listen', 'listxattr', 'llistxattr', '_llseek', 'lremovexattr', 'lseek', 'lsetxattr', 'lstat',
  'lstat64', 'madvise', 'membarrier', 'memfd_create', 'mincore', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'mlock',
  'mlock2', 'mlockall', 'mmap', 'mmap2', 'mprotect', 'mq_getsetattr', 'mq_notify', 'mq_open', 'mq_timedreceive',
  'mq_timedreceive_time64', 'mq_timedsend', 'mq_timedsend_time64', 'mq_unlink', 'mremap', 'msgctl', 'msgget',
  'msgrcv', 'msgsnd', 'msync', 'munlock', 'munlockall', 'munmap', 'nanosleep', 'newfstatat', '_newselect', 'open',
  'openat', 'openat2', 'pause', 'pidfd_open', 'pidfd_send_signal', 'pipe', 'pipe2', 'poll', 'ppoll', 'ppoll_time64',
  'prctl', 'pread64', 'preadv', 'preadv2', 'prlimit64', 'process_mrelease', 'pselect6', 'pselect6_time64',
  'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead', 'readlink', 'readlinkat', 'readv', 'recv', 'recvfrom',
  'recvmmsg', 'recvmmsg_time64', 'recvmsg', 'removexattr', 'rename', 'renameat', 'renameat2', 'restart_syscall',
  'rmdir', 'rseq', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn',
  'rt_sigsuspend', 'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo', 'sched_getaffinity',
  'sched_getattr', 'sched_getparam', 'sched_get_priority_max', 'sched_get_priority_min', 'sched_getscheduler',
  'sched_rr_get_interval', 'sched_rr_get_interval_time64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam',
  'sched_setscheduler', 'sched_yield', 'seccomp', 'select', 'semctl', 'semget', 'semop', 'semtimedop',
  'semtimedop_time64', 'send', 'sendfile', 'sendfile64', 'sendmmsg', 'sendmsg', 'sendto', 'setfsgid', 'setfsgid32',
  'setfsuid', 'setfsuid32', 'setgid', 'setgid32', 'setgroups', 'setgroups32', 'setitimer', 'setpgid', 'setpriority',
  'setregid', 'setregid32', 'setresgid', 'setresgid32', 'setresuid', 'setresuid32', 'setreuid', 'setreuid32',
  'setrlimit', 'set_robust_list', 'setsid', 'setsockopt', 'set_thread_area', 'set_tid_address', 'setuid', 'setuid32',
  'setxattr', 'shmat', 'shmctl', 'shmdt', 'shmget', 'shutdown', 'sigaltstack', 'signalfd', 'signalfd4',
  'sigprocmask', 'sigreturn', 'socket', 'socketcall', 'socketpair', 'splice', 'stat', 'stat64', 'statfs', 'statfs64',
  'statx', 'symlink', 'symlinkat', 'sync', 'sync_file_range', 'syncfs', 'sysinfo', 'tee', 'tgkill', 'time',
  'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_gettime64', 'timer_settime',
  'timer_settime64', 'timerfd_create', 'timerfd_gettime', 'timerfd_gettime64', 'timerfd_settime',
  'timerfd_settime64', 'times', 'tkill', 'truncate', 'truncate64', 'ugetrlimit', 'umask', 'uname', 'unlink',
  'unlinkat', 'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vfork', 'vmsplice', 'wait4', 'waitid', 'waitpid',
  'write', 'writev',
];

/** `personality(2)` only with the values Docker allows (Linux, 32-bit emulation, and queries). */
const PERSONALITY_VALUES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];
/** clone(2) flags that make namespaces: refused, as in Docker's default (CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP). */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;
const ENOSYS = 38;
const EPERM = 1;

interface SeccompRule {
  names: string[];
  action: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO';
  errnoRet?: number;
  args?: Array<{ index: number; value: number; op: string }>;
  includes?: { arches?: string[]; minKernel?: string };
  excludes?: { arches?: string[] };
}

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ERRNO';
  defaultErrnoRet: number;
  archMap: Array<{ architecture: string; subArchitectures: string[] }>;
  syscalls: SeccompRule[];
}

export interface ProfileOptions {
  /**
   * gVisor (runsc, with --oci-seccomp) loads the profile into its own kernel, which answers a refused syscall with
   * EPERM whatever errno the profile names. glibc falls back from clone3 to clone only on ENOSYS, so there no thread
   * could start: under gVisor clone3 is allowed. Its namespaces would be gVisor's, never the host kernel's.
   */
  gvisor?: boolean;
}

export function seccompProfile(options: ProfileOptions = {}): SeccompProfile {
  const s390 = ['s390', 's390x'];
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    archMap: [
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
      { architecture: 'SCMP_ARCH_S390X', subArchitectures: ['SCMP_ARCH_S390'] },
      { architecture: 'SCMP_ARCH_PPC64LE', subArchitectures: [] },
    ],
    syscalls: [
      { names: ALLOWED_SYSCALLS, action: 'SCMP_ACT_ALLOW' },
      // Before 4.8 a ptraced process could skip seccomp; a step may ptrace its own processes (strace, gdb), never asp's.
      { names: ['ptrace'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
      ...PERSONALITY_VALUES.map((value): SeccompRule => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] })),
      { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
      { names: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm', 'arm64'] } },
      { names: ['sync_file_range2'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['ppc64le'] } },
      { names: ['s390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr'], action: 'SCMP_ACT_ALLOW', includes: { arches: s390 } },
      // Threads and processes, but no new namespaces (s390 swaps clone's first two arguments).
      { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, op: 'SCMP_CMP_MASKED_EQ' }], excludes: { arches: s390 } },
      { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: CLONE_NAMESPACE_FLAGS, op: 'SCMP_CMP_MASKED_EQ' }], includes: { arches: s390 } },
      // clone3 passes its flags in memory, where seccomp cannot look: ENOSYS makes libc fall back to clone.
      options.gvisor ? { names: ['clone3'], action: 'SCMP_ACT_ALLOW' } : { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      ...DENIED_SYSCALLS.map((rule): SeccompRule => ({ names: rule.names, action: 'SCMP_ACT_ERRNO', errnoRet: rule.errno })),
    ],
  };
}

/** Whether a runtime name is gVisor's (`runsc`, or a name registered for it such as `runsc-debug`). */
export function isGvisor(runtime: string | undefined): boolean {
  return runtime !== undefined && /^runsc\b/.test(runtime);
}

/** The profile as the Engine API takes it in `HostConfig.SecurityOpt`: `seccomp=<json>`, built once per process. */
const inline = new Map<boolean, string>();
export function seccompSecurityOpt(runtime?: string): string {
  const gvisor = isGvisor(runtime);
  let text = inline.get(gvisor);
  if (text === undefined) {
    text = `seccomp=${JSON.stringify(seccompProfile({ gvisor }))}`;
    inline.set(gvisor, text);
  }
  return text;
}
