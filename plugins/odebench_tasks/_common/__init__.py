"""What every built-in task shares: data cache and downloads."""
