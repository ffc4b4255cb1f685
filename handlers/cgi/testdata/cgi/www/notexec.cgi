#!/bin/sh
echo SOURCE-OF-NOTEXEC
