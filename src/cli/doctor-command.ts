import { mkdir, statfs } from 'node:fs/promises';
import type { Command } from 'commander';
import { AspError, errorMessage, EXIT } from '../core/asp-error.js';
import { formatBytes } from '../config/units.js';
import { describeRuntimeVolume, runtimeVolumeName } from '../docker/runtime-volume.js';
import { imageContext } from '../docker/sandbox-image.js';
import { probeSandboxStart } from '../docker/engine-probe.js';
import { checkRuntime } from '../backend/sandbox-policy.js';
import { isGvisor } from '../backend/seccomp-profile.js';
import { LazyKubernetesBackend } from '../k8s/lazy-backend.js';
import { makeContext, reportFailure, type CliContext } from './cli-context.js';
import { kubernetesChecks, type DoctorCheck } from './doctor-k8s.js';
import { hostNameCheck } from './doctor-owners.js';

type Check = DoctorCheck;

/** Below this much free space under the workspace root, clones and artifacts will start failing. */
const MIN_FREE_BYTES = 1024 ** 3;

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check Docker (or the Kubernetes cluster), the sandbox image and disk space')
    .option('--backend <name>', 'docker or k8s: which to check (default: ASP_BACKEND, else docker)')
    .option('--namespace <name>', 'the Kubernetes namespace to check')
    .option('--runtime <name>', 'k8s: also check that this RuntimeClass is there')
    .option('--json', 'print the checks as JSON')
    .action(async (flags: { json?: boolean; backend?: string; namespace?: string; runtime?: string }) => {
      const json = Boolean(flags.json);
      try {
        const context = makeContext({ json, backend: flags.backend, namespace: flags.namespace });
        const checks: Check[] = [];
        if (context.backend instanceof LazyKubernetesBackend) checks.push(...(await kubernetesChecks(await context.backend.load(), flags.runtime)));
        else await dockerChecks(context, checks);
        await hostChecks(context, checks);
        // Not asked of an engine that did not answer: its own line said so, and a second wait would say nothing more.
        const engineDown = checks.some((check) => (check.name === 'docker' || check.name === 'k8s') && !check.ok);
        const hostName = engineDown ? undefined : await hostNameCheck(context.backend, context.settings.workspacesRoot);
        if (hostName) checks.push(hostName);
        const failed = checks.filter((check) => !check.ok && !check.advisory);
        const exitCode = failed.length ? EXIT.infrastructure : EXIT.ok;
        if (json) context.stdout(JSON.stringify({ ok: failed.length === 0, exitCode, checks }) + '\n');
        else {
          for (const check of checks) context.stdout(`${check.ok ? 'ok  ' : check.advisory ? 'note' : 'FAIL'}  ${check.name.padEnd(8)} ${check.detail}\n`);
        }
        process.exitCode = exitCode;
      } catch (error) {
        process.exitCode = reportFailure(error, { json, debug: false });
      }
    });
}

/** The Docker engine, asp's image and the runtime volume (and on Podman, a sandbox start). */
async function dockerChecks(context: CliContext, checks: Check[]): Promise<void> {
  let dockerUp = false;
  let podman = false;
  try {
    const info = await context.docker.info();
    dockerUp = true;
    checks.push({
      name: 'docker',
      ok: true,
      detail: `${info.product === 'podman' ? 'Podman' : 'Docker'} ${info.serverVersion} (API ${info.apiVersion}, ${info.os}/${info.arch}) at ${info.endpoint}${info.source ? ` (${info.source})` : ''}; ${
        // Podman lists every runtime it has a name for, installed or not, and runs each container under its default anyway.
        info.product === 'podman' ? "runtime: Podman's default (it ignores the runtime a container asks for)" : `runtimes: ${info.runtimes.join(', ') || 'default'}`
      }`,
    });
    // gVisor where the daemon has it: registered so that asp can use it, or how to make it so.
    const gvisor = info.product === 'podman' ? undefined : info.runtimes.find(isGvisor);
    if (gvisor) {
      try {
        checkRuntime(gvisor, info);
        checks.push({ name: 'gvisor', ok: true, detail: `${gvisor} registered with --network=none and --oci-seccomp: --runtime ${gvisor} works` });
      } catch (error) {
        checks.push({ name: 'gvisor', ok: false, advisory: true, detail: `${errorMessage(error)}${error instanceof AspError && error.hint ? ` — ${error.hint}` : ''}` });
      }
    }
    podman = info.product === 'podman';
  } catch (error) {
    // A FAIL line says what to do too, like every other error of asp.
    checks.push({ name: 'docker', ok: false, detail: `${errorMessage(error)}${error instanceof AspError && error.hint ? ` — ${error.hint}` : ''}` });
  }
  try {
    const { tag, baseImage } = imageContext();
    if (!dockerUp) checks.push({ name: 'image', ok: false, detail: `${tag}: cannot check without Docker`, advisory: true });
    else if (await context.docker.imageExists(tag)) checks.push({ name: 'image', ok: true, detail: `${tag} present` });
    else {
      const base = await context.docker.imageExists(baseImage);
      checks.push({
        name: 'image',
        ok: false,
        advisory: base,
        detail: base ? `${tag} not built yet: asp run builds it (or run asp image build)` : `${tag} missing and its base ${baseImage} is not present: load or build the base image`,
      });
    }
  } catch (error) {
    checks.push({ name: 'image', ok: false, detail: errorMessage(error) });
  }
  if (dockerUp) {
    // The runner's runtime for images other than asp's own: made on the first such task, reused after.
    try {
      const { tag } = imageContext();
      const state = (await context.docker.imageExists(tag)) ? await describeRuntimeVolume(context.docker, tag) : undefined;
      const manifest = state?.manifest;
      checks.push({
        name: 'runtime',
        ok: Boolean(manifest),
        advisory: true,
        detail: !state
          ? `${runtimeVolumeName(tag)} not prepared yet: the first task with --image of another image makes it (a few seconds)`
          : manifest
            ? `${state.volume} prepared: version ${manifest.version}, ${manifest.arch}, ${manifest.files} files, ${formatBytes(manifest.bytes)} (for --image of any image; read-only at /opt/asp)`
            : `${state.volume} is there but holds no runtime manifest: remove it (docker volume rm ${state.volume}) and the next task makes it again`,
      });
    } catch (error) {
      checks.push({ name: 'runtime', ok: false, advisory: true, detail: errorMessage(error) });
    }
  }
  if (podman) {
    // Podman's prerequisites (an init binary it finds, rlimits this host allows) show only when a container starts.
    const { tag } = imageContext();
    if (!(await context.docker.imageExists(tag).catch(() => false))) {
      checks.push({ name: 'podman', ok: false, advisory: true, detail: `cannot try a sandbox start without ${tag}: asp run builds it (or asp image build)` });
    } else {
      const failure = await probeSandboxStart(context.docker, tag);
      checks.push(
        failure === undefined
          ? { name: 'podman', ok: true, detail: 'a hardened sandbox (Init, limits, seccomp, no network) started and ended' }
          : {
              name: 'podman',
              ok: false,
              detail: `a hardened sandbox did not start: ${failure} — Podman needs catatonit for Init (init_path in containers.conf) and default_ulimits this host allows; without systemd, cgroup_manager = "cgroupfs" (README: Which daemon)`,
            },
      );
    }
  }
}

/** What every backend needs of this host: room for workspaces, and where traces go. */
async function hostChecks(context: CliContext, checks: Check[]): Promise<void> {
  try {
    await mkdir(context.settings.workspacesRoot, { recursive: true });
    const fs = await statfs(context.settings.workspacesRoot);
    const free = fs.bavail * fs.bsize;
    checks.push({ name: 'disk', ok: free >= MIN_FREE_BYTES, detail: `${formatBytes(free)} free under ${context.settings.workspacesRoot}` });
  } catch (error) {
    checks.push({ name: 'disk', ok: false, detail: `${context.settings.workspacesRoot}: ${errorMessage(error)} — set ASP_WORKSPACES to a writable directory` });
  }
  const langfuse = context.settings.langfuse;
  checks.push({ name: 'langfuse', ok: true, advisory: true, detail: langfuse ? `configured: ${langfuse.baseUrl}` : 'not configured: traces stay local (.asp/trace.json)' });
}
