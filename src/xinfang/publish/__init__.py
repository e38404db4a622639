"""Write-audit-publish: the quality gate, the monthly report and the provincial extract for a period."""
