<?php

declare(strict_types=1);

namespace Phase\Sdk;

/**
 * The canonical bytes of docs/formats.md: the job id and the signed bytes of a receipt.
 * Checked against docs/test-vectors/receipt-v1.json by the tests.
 */
final class Canonical
{
    public const JOB_DOMAIN = "phase-job/v1\n";
    public const RECEIPT_DOMAIN = "phase-receipt/v1\n";
    public const RECEIPT_DOMAIN_V2 = "phase-receipt/v2\n";

    /** Trap names and their codes in the signed bytes. */
    public const TRAPS = [
        'out_of_fuel' => 1, 'memory_limit' => 2, 'deadline' => 3, 'output_limit' => 4,
        'stack_overflow' => 5, 'unreachable' => 6, 'memory_out_of_bounds' => 7,
        'table_out_of_bounds' => 8, 'indirect_call_to_null' => 9, 'integer_division_by_zero' => 10,
        'integer_overflow' => 11, 'bad_conversion_to_integer' => 12, 'bad_signature' => 13,
        'instantiation' => 14, 'no_entry_point' => 15, 'other' => 16,
    ];

    public static function u32(int $v): string
    {
        return pack('N', $v);
    }

    /** Unsigned 64-bit big-endian; PHP ints are signed 64-bit, so values stay below 2^63. */
    public static function u64(int $v): string
    {
        if ($v < 0) {
            throw new \InvalidArgumentException("negative value {$v} where an unsigned integer is needed");
        }
        return pack('J', $v);
    }

    /**
     * @param string $moduleSha256 raw 32 bytes
     * @param string $inputSha256 raw 32 bytes
     * @param list<string> $args
     * @param list<string> $env KEY=VALUE entries
     * @param array{fuel:int,memory_bytes:int,output_bytes:int,deadline_ms:int} $limits
     */
    public static function jobBytes(string $moduleSha256, string $inputSha256, array $args, array $env, array $limits): string
    {
        $out = self::JOB_DOMAIN . $moduleSha256 . $inputSha256;
        foreach ([$args, $env] as $list) {
            $out .= self::u32(count($list));
            foreach ($list as $item) {
                $out .= self::u32(strlen($item)) . $item;
            }
        }
        return $out . self::limitBytes($limits);
    }

    /** @param array{fuel:int,memory_bytes:int,output_bytes:int,deadline_ms:int} $limits */
    public static function limitBytes(array $limits): string
    {
        return self::u64($limits['fuel']) . self::u64($limits['memory_bytes'])
            . self::u64($limits['output_bytes']) . self::u64($limits['deadline_ms']);
    }

    /** Raw 32-byte job id; `$filesDigest` (raw) for a job with files. */
    public static function jobId(string $moduleSha256, string $inputSha256, array $args, array $env, array $limits, string $filesDigest = ''): string
    {
        return hash('sha256', self::jobBytes($moduleSha256, $inputSha256, $args, $env, $limits) . $filesDigest, true);
    }
}
