<?php

declare(strict_types=1);

namespace Phase\Sdk;

/** A verified job result: output, exit status or trap, and the receipt(s) that prove it. */
final class Result
{
    /** @param list<Receipt> $receipts one per node that ran the job (redundancy) */
    public function __construct(
        private readonly string $jobId,
        private readonly string $stdout,
        private readonly string $stderr,
        private readonly ?int $exitCode,
        private readonly ?string $trap,
        private readonly ?string $trapDetail,
        private readonly int $fuelUsed,
        private readonly int $wallTimeUs,
        private readonly array $receipts,
        private readonly bool $replayed = false,
        private readonly array $files = [],
    ) {
    }

    /**
     * What a job with files left in them, each entry verified against the receipt: the
     * mount's guest name, the path below it, and `file` (with `data`, its bytes, and
     * `executable`), `dir`, `symlink` (with `target`) or `removed`.
     * @return list<array{mount:string,path:string,kind:string,data?:string,executable?:bool,target?:string}>
     */
    public function files(): array
    {
        return $this->files;
    }

    /** The bytes of the file the job left at `$path` in mount `$mount`, or null. */
    public function file(string $mount, string $path): ?string
    {
        foreach ($this->files as $f) {
            if ($f['mount'] === $mount && $f['path'] === $path && $f['kind'] === 'file') {
                return $f['data'];
            }
        }
        return null;
    }

    public function jobId(): string
    {
        return $this->jobId;
    }
    public function stdout(): string
    {
        return $this->stdout;
    }
    public function stderr(): string
    {
        return $this->stderr;
    }
    /** The guest's exit code, or null if it trapped. */
    public function exitCode(): ?int
    {
        return $this->exitCode;
    }
    /** The trap name (docs/formats.md), or null if the guest exited. */
    public function trap(): ?string
    {
        return $this->trap;
    }
    public function trapDetail(): ?string
    {
        return $this->trapDetail;
    }
    public function isSuccess(): bool
    {
        return $this->exitCode === 0;
    }
    public function fuelUsed(): int
    {
        return $this->fuelUsed;
    }
    public function wallTimeUs(): int
    {
        return $this->wallTimeUs;
    }
    /** True when a node returned an earlier result for the idempotency key. */
    public function replayed(): bool
    {
        return $this->replayed;
    }
    public function receipt(): Receipt
    {
        return $this->receipts[0];
    }
    /** @return list<Receipt> */
    public function receipts(): array
    {
        return $this->receipts;
    }

    /** The distinct node keys that signed this result. */
    public function nodeKeys(): array
    {
        return array_values(array_unique(array_map(static fn (Receipt $r) => $r->nodeKey, $this->receipts)));
    }
}
