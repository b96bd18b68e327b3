<?php

declare(strict_types=1);

namespace Phase\Sdk\Exception;

use Phase\Sdk\Result;

/**
 * The job trapped (out of fuel, memory limit, deadline, ...). The result, with its verified
 * receipt, is attached: a trap is a genuine, signed outcome. Never retried.
 */
final class JobException extends \RuntimeException implements PhaseException
{
    public function __construct(public readonly Result $result)
    {
        $detail = $result->trapDetail() !== null ? " ({$result->trapDetail()})" : '';
        parent::__construct("job {$result->jobId()} trapped: {$result->trap()}{$detail}");
    }
}
