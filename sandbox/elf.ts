/**
 * Just enough ELF to move a program onto another loader: the program headers, the PT_INTERP path, the DT_NEEDED
 * names. ELF64 little-endian only (x86-64 and aarch64, the two machines asp's image is built for); no dependencies,
 * because it runs inside the sandbox image, which has no node_modules.
 *
 * The files come from an image, so every offset in them is checked before it is read: a truncated or hostile file
 * throws an ElfError naming what was out of bounds, never a RangeError from deep inside Buffer or a silently short
 * string.
 */

export class ElfError extends Error {
  override readonly name = 'ElfError';
}

export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const DT_SONAME = 14n;

const HEADER_BYTES = 64;
const PHDR_BYTES = 56;
const DYN_BYTES = 16;
/** e_phnum == PN_XNUM means the real count lives in section 0; no program asp packs has 65535 segments. */
const PN_XNUM = 0xffff;

export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export interface ElfHeader {
  /** ET_EXEC (2) or ET_DYN (3, PIE programs and shared libraries). */
  type: number;
  machine: number;
  programHeaders: ProgramHeader[];
}

/** The magic only: says whether a file claims to be ELF, before anything is trusted. */
export function isElf(buffer: Uint8Array): boolean {
  return buffer.length >= 4 && buffer[0] === 0x7f && buffer[1] === 0x45 && buffer[2] === 0x4c && buffer[3] === 0x46;
}

export function readElfHeader(buffer: Uint8Array): ElfHeader {
  if (!isElf(buffer)) throw new ElfError('not an ELF file (no \\x7fELF magic)');
  const view = viewOf(buffer);
  need(view, 0, HEADER_BYTES, 'the ELF header');
  if (view.getUint8(4) !== 2) throw new ElfError(`not ELF64 (EI_CLASS ${view.getUint8(4)})`);
  if (view.getUint8(5) !== 1) throw new ElfError(`not little-endian (EI_DATA ${view.getUint8(5)})`);
  const machine = view.getUint16(18, true);
  if (machine !== EM_X86_64 && machine !== EM_AARCH64) throw new ElfError(`unsupported machine ${machine} (only x86-64 and aarch64)`);
  const phoff = u64(view, 32, 'e_phoff');
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  if (phnum === PN_XNUM) throw new ElfError('too many program headers (PN_XNUM) to handle');
  if (phnum > 0 && phentsize < PHDR_BYTES) throw new ElfError(`program header entries of ${phentsize} bytes are too small (need ${PHDR_BYTES})`);
  need(view, phoff, phnum * phentsize, `${phnum} program headers at ${phoff}`);
  const programHeaders: ProgramHeader[] = [];
  for (let index = 0; index < phnum; index++) {
    const at = phoff + index * phentsize;
    const header: ProgramHeader = {
      type: view.getUint32(at, true),
      flags: view.getUint32(at + 4, true),
      offset: u64(view, at + 8, 'p_offset'),
      vaddr: u64(view, at + 16, 'p_vaddr'),
      filesz: u64(view, at + 32, 'p_filesz'),
      memsz: u64(view, at + 40, 'p_memsz'),
    };
    // PT_LOAD and PT_DYNAMIC contents are read through these, so their file ranges must lie inside the file.
    if (header.type === PT_LOAD || header.type === PT_DYNAMIC || header.type === PT_INTERP) need(view, header.offset, header.filesz, `segment ${index} (type ${header.type})`);
    programHeaders.push(header);
  }
  return { type: view.getUint16(16, true), machine, programHeaders };
}

/** The loader a dynamic program asks for (PT_INTERP), or undefined for a static program or a shared library. */
export function interpreterOf(buffer: Uint8Array): string | undefined {
  const segment = interpSegment(buffer);
  if (!segment) return undefined;
  const bytes = buffer.subarray(segment.offset, segment.offset + segment.filesz);
  const end = bytes.indexOf(0);
  if (end < 0) throw new ElfError('PT_INTERP is not NUL-terminated');
  if (end === 0) throw new ElfError('PT_INTERP is empty');
  return Buffer.from(bytes.subarray(0, end)).toString('latin1');
}

/**
 * A copy of the program with PT_INTERP set to `path`, NUL-padded to the segment's size. Nothing else moves, which
 * is why the new path must fit the old one's bytes (p_filesz, NUL included): growing it would mean relocating
 * segments, which is patchelf's job and not worth carrying here.
 */
export function withInterpreter(buffer: Uint8Array, path: string): Buffer {
  const segment = interpSegment(buffer);
  if (!segment) throw new ElfError('the program has no PT_INTERP (it is static or a library): there is no loader to replace');
  if (path.length === 0 || path.includes('\0')) throw new ElfError('the new interpreter path must be non-empty and contain no NUL');
  const bytes = Buffer.from(path, 'latin1');
  if (bytes.toString('latin1') !== path) throw new ElfError(`the new interpreter path ${JSON.stringify(path)} is not plain 8-bit text`);
  if (bytes.length + 1 > segment.filesz) {
    throw new ElfError(`the new interpreter path ${JSON.stringify(path)} needs ${bytes.length + 1} bytes with its NUL, PT_INTERP holds ${segment.filesz}`);
  }
  const copy = Buffer.from(buffer);
  copy.fill(0, segment.offset, segment.offset + segment.filesz);
  bytes.copy(copy, segment.offset);
  return copy;
}

/** The DT_NEEDED names, in the order the loader reads them; empty for a static program. */
export function neededLibraries(buffer: Uint8Array): string[] {
  return dynamicStrings(buffer, DT_NEEDED);
}

/** DT_SONAME, the name a shared library answers to (the loader's own is how libc's DT_NEEDED on it is satisfied). */
export function sonameOf(buffer: Uint8Array): string | undefined {
  return dynamicStrings(buffer, DT_SONAME)[0];
}

function interpSegment(buffer: Uint8Array): ProgramHeader | undefined {
  const interps = readElfHeader(buffer).programHeaders.filter((header) => header.type === PT_INTERP);
  if (interps.length > 1) throw new ElfError(`${interps.length} PT_INTERP segments (a program has at most one)`);
  return interps[0];
}

function dynamicStrings(buffer: Uint8Array, tag: bigint): string[] {
  const elf = readElfHeader(buffer);
  const dynamic = elf.programHeaders.find((header) => header.type === PT_DYNAMIC);
  if (!dynamic) return [];
  const view = viewOf(buffer);
  const values: number[] = [];
  let strtab: number | undefined;
  let strsz: number | undefined;
  for (let at = dynamic.offset; at + DYN_BYTES <= dynamic.offset + dynamic.filesz; at += DYN_BYTES) {
    const entryTag = view.getBigInt64(at, true);
    if (entryTag === DT_NULL) break;
    const value = u64(view, at + 8, 'd_val');
    if (entryTag === tag) values.push(value);
    else if (entryTag === DT_STRTAB) strtab = value;
    else if (entryTag === DT_STRSZ) strsz = value;
  }
  if (values.length === 0) return [];
  if (strtab === undefined || strsz === undefined) throw new ElfError('PT_DYNAMIC has entries that name strings but no DT_STRTAB or DT_STRSZ');
  // DT_STRTAB is a virtual address: the file offset is where the PT_LOAD segment holding it starts in the file.
  const start = fileOffsetOf(elf.programHeaders, strtab, strsz);
  const table = buffer.subarray(start, start + strsz);
  return values.map((offset) => {
    if (offset >= table.length) throw new ElfError(`a dynamic string at ${offset} is outside DT_STRTAB (${table.length} bytes)`);
    const end = table.indexOf(0, offset);
    if (end < 0) throw new ElfError(`the dynamic string at ${offset} runs past the end of DT_STRTAB`);
    return Buffer.from(table.subarray(offset, end)).toString('latin1');
  });
}

function fileOffsetOf(headers: ProgramHeader[], vaddr: number, size: number): number {
  for (const header of headers) {
    if (header.type !== PT_LOAD) continue;
    if (vaddr >= header.vaddr && vaddr + size <= header.vaddr + header.filesz) return header.offset + (vaddr - header.vaddr);
  }
  throw new ElfError(`DT_STRTAB at 0x${vaddr.toString(16)} (${size} bytes) is not inside the file part of any PT_LOAD segment`);
}

function viewOf(buffer: Uint8Array): DataView {
  return new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function need(view: DataView, offset: number, length: number, what: string): void {
  if (offset + length > view.byteLength) throw new ElfError(`truncated: ${what} ends at byte ${offset + length}, the file has ${view.byteLength}`);
}

/** A 64-bit field as a number: larger than 2^53 is no real file's offset or size, so it is refused, not rounded. */
function u64(view: DataView, at: number, what: string): number {
  need(view, at, 8, what);
  const value = view.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(`${what} 0x${value.toString(16)} is beyond any file`);
  return Number(value);
}
