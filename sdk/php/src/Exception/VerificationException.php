<?php

declare(strict_types=1);

namespace Phase\Sdk\Exception;

/**
 * A receipt did not verify: bad signature, a hash that does not match what was sent or
 * received, an untrusted node key, or nodes that disagree. Never retried: it is evidence of a
 * faulty or dishonest node, not a transient failure.
 */
final class VerificationException extends \RuntimeException implements PhaseException
{
}
