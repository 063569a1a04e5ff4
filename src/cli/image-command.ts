import type { Command } from 'commander';
import { EXIT } from '../core/asp-error.js';
import { printable } from '../core/printable.js';
import { buildSandboxImage, imageContext } from '../docker/sandbox-image.js';
import { seccompProfile } from '../backend/seccomp-profile.js';
import { makeContext, reportFailure } from './cli-context.js';

export function registerImageCommand(program: Command): void {
  const image = program.command('image').description('manage the sandbox image');
  image
    .command('build')
    .description('build the sandbox image (asp run does it by itself when missing)')
    .option('--base <image>', 'base image', undefined)
    .option('--json', 'print the result as JSON')
    .action(async (flags: { base?: string; json?: boolean }) => {
      const json = Boolean(flags.json);
      try {
        const context = makeContext({ json });
        const target = imageContext(undefined, flags.base);
        context.log.info({ image: target.tag }, `building ${target.tag} from ${target.baseImage}`);
        await buildSandboxImage(context.docker, target, (line) => {
          if (!json) process.stderr.write(`  ${printable(line)}\n`);
        });
        if (json) context.stdout(JSON.stringify({ image: target.tag }) + '\n');
        else context.stdout(`${target.tag}\n`);
        process.exitCode = EXIT.ok;
      } catch (error) {
        process.exitCode = reportFailure(error, { json, debug: false });
      }
    });
  image
    .command('seccomp-profile')
    .description("print asp's seccomp profile as JSON: on Kubernetes, install it on every node and set ASP_K8S_SECCOMP_PROFILE")
    .option('--gvisor', 'the variant for gVisor (runsc) nodes')
    .action((flags: { gvisor?: boolean }) => {
      process.stdout.write(JSON.stringify(seccompProfile({ gvisor: Boolean(flags.gvisor) }), null, 2) + '\n');
      process.exitCode = EXIT.ok;
    });
}
