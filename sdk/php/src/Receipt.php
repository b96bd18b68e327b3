<?php

declare(strict_types=1);

namespace Phase\Sdk;

use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\VerificationException;

/**
 * A phase-receipt/v1, or v2 for a job with files (docs/formats.md). `fromArray` validates the
 * shape strictly; `verify` checks the Ed25519 signature over the canonical bytes (never over
 * JSON).
 */
final class Receipt
{
    public const FORMAT = 'phase-receipt/v1';
    public const FORMAT_V2 = 'phase-receipt/v2';

    /** @param array{fuel:int,memory_bytes:int,output_bytes:int,deadline_ms:int} $limits */
    private function __construct(
        public readonly string $jobId,
        public readonly string $moduleSha256,
        public readonly string $inputSha256,
        public readonly string $stdoutSha256,
        public readonly string $stderrSha256,
        public readonly ?int $exitCode,
        public readonly ?string $trap,
        public readonly int $fuelUsed,
        public readonly array $limits,
        public readonly int $wallTimeUs,
        public readonly string $nodeKey,
        public readonly string $signature,
        /** v2: the digests (hex) of the files given and left, and the file limits applied. */
        public readonly ?string $filesSha256 = null,
        public readonly ?string $leftSha256 = null,
        public readonly ?array $fileLimits = null,
    ) {
    }

    public static function fromJson(string $json): self
    {
        try {
            $data = json_decode($json, true, 16, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
        } catch (\JsonException $e) {
            throw new ProtocolException('receipt is not JSON: ' . $e->getMessage());
        }
        if (!is_array($data)) {
            throw new ProtocolException('receipt is not a JSON object');
        }
        return self::fromArray($data);
    }

    /** Hex fields are returned lower-case hex; they are checked for length and alphabet. */
    public static function fromArray(array $r): self
    {
        $format = $r['format'] ?? null;
        if ($format !== self::FORMAT && $format !== self::FORMAT_V2) {
            throw new ProtocolException('unknown receipt format ' . json_encode($format));
        }
        $v2 = $format === self::FORMAT_V2;
        foreach (['files_sha256', 'left_sha256', 'file_limits'] as $k) {
            if (array_key_exists($k, $r) !== $v2) {
                throw new ProtocolException("a {$format} receipt " . ($v2 ? 'needs' : 'has no') . " field {$k}");
            }
        }
        $hex = static function (string $name, int $bytes) use ($r): string {
            $v = $r[$name] ?? null;
            if (!is_string($v) || strlen($v) !== 2 * $bytes || !ctype_xdigit($v)) {
                throw new ProtocolException("receipt field {$name} must be " . (2 * $bytes) . ' hex digits');
            }
            return strtolower($v);
        };
        $uint = static function ($v, string $name): int {
            if (!is_int($v) || $v < 0) {
                throw new ProtocolException("receipt field {$name} must be an unsigned integer below 2^63");
            }
            return $v;
        };
        $limits = $r['limits'] ?? null;
        if (!is_array($limits)) {
            throw new ProtocolException('receipt field limits must be an object');
        }
        $l = [];
        foreach (['fuel', 'memory_bytes', 'output_bytes', 'deadline_ms'] as $k) {
            $l[$k] = $uint($limits[$k] ?? null, "limits.{$k}");
        }
        $exit = $r['exit_code'] ?? null;
        $trap = $r['trap'] ?? null;
        if (($exit === null) === ($trap === null)) {
            throw new ProtocolException('receipt must set exactly one of exit_code and trap');
        }
        if ($exit !== null && (!is_int($exit) || $exit < 0 || $exit > 0xffffffff)) {
            throw new ProtocolException('receipt exit_code must be a 32-bit unsigned integer');
        }
        if ($trap !== null && (!is_string($trap) || !isset(Canonical::TRAPS[$trap]))) {
            throw new ProtocolException('unknown trap kind ' . json_encode($trap));
        }
        return new self(
            $hex('job_id', 32),
            $hex('module_sha256', 32),
            $hex('input_sha256', 32),
            $hex('stdout_sha256', 32),
            $hex('stderr_sha256', 32),
            $exit,
            $trap,
            $uint($r['fuel_used'] ?? null, 'fuel_used'),
            $l,
            $uint($r['wall_time_us'] ?? null, 'wall_time_us'),
            $hex('node_key', 32),
            $hex('signature', 64),
            $v2 ? $hex('files_sha256', 32) : null,
            $v2 ? $hex('left_sha256', 32) : null,
            $v2 ? self::fileLimits($r['file_limits'], $uint) : null,
        );
    }

    /** @return array<string,int> */
    private static function fileLimits(mixed $limits, callable $uint): array
    {
        if (!is_array($limits)) {
            throw new ProtocolException('receipt field file_limits must be an object');
        }
        $l = [];
        foreach (Files::LIMITS as $k) {
            $l[$k] = $uint($limits[$k] ?? null, "file_limits.{$k}");
        }
        return $l;
    }

    /** The exact bytes the node signed. */
    public function signedBytes(): string
    {
        $outcome = $this->trap === null
            ? "\x00" . Canonical::u32($this->exitCode)
            : "\x01" . Canonical::u32(Canonical::TRAPS[$this->trap]);
        $files = '';
        if ($this->fileLimits !== null) {
            $files = hex2bin($this->filesSha256) . hex2bin($this->leftSha256);
            foreach (Files::LIMITS as $k) {
                $files .= Canonical::u64($this->fileLimits[$k]);
            }
        }
        return ($this->fileLimits === null ? Canonical::RECEIPT_DOMAIN : Canonical::RECEIPT_DOMAIN_V2)
            . hex2bin($this->jobId) . hex2bin($this->moduleSha256) . hex2bin($this->inputSha256)
            . hex2bin($this->stdoutSha256) . hex2bin($this->stderrSha256) . $files
            . $outcome . Canonical::u64($this->fuelUsed) . Canonical::limitBytes($this->limits)
            . Canonical::u64($this->wallTimeUs) . hex2bin($this->nodeKey);
    }

    /** True if the signature verifies under the receipt's own node key. */
    public function signatureValid(): bool
    {
        try {
            return sodium_crypto_sign_verify_detached(hex2bin($this->signature), $this->signedBytes(), hex2bin($this->nodeKey));
        } catch (\SodiumException) {
            return false;
        }
    }

    /**
     * Checks the signature and, if given, that the signer is one of the trusted node keys.
     * @param list<string> $trustedKeys hex public keys; empty = any signer
     */
    public function verify(array $trustedKeys = []): void
    {
        if (!$this->signatureValid()) {
            throw new VerificationException("receipt for job {$this->jobId}: signature does not verify under node key {$this->nodeKey}");
        }
        if ($trustedKeys !== [] && !in_array($this->nodeKey, array_map('strtolower', $trustedKeys), true)) {
            throw new VerificationException("receipt for job {$this->jobId} is signed by node {$this->nodeKey}, which is not a trusted key");
        }
    }

    /** The fields that must be equal on every honest node for one job. */
    public function outcomeFingerprint(): string
    {
        return implode('|', [$this->jobId, $this->stdoutSha256, $this->stderrSha256,
            $this->exitCode ?? '-', $this->trap ?? '-', $this->fuelUsed, $this->leftSha256 ?? '-']);
    }
}
