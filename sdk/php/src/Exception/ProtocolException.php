<?php

declare(strict_types=1);

namespace Phase\Sdk\Exception;

/** The node's answer is not a valid Phase answer (not JSON, wrong shape, too large). */
final class ProtocolException extends \RuntimeException implements PhaseException
{
}
