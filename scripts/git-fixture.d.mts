export function git(cwd: string, ...args: string[]): string;
export function makeRepoFromDir(sourceDir: string, destination: string, message?: string): string;
